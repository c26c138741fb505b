"""One pass of examples/bot.py against a live server with an open round, offers and a price index."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from pathlib import Path

import pytest

from auctions.models import PricePoint, Round, RoundStatus
from gridx_client import GridxClient
from marketplace.models import Bid, BidStatus
from tests.client.conftest import LiveMarket

_PATH = Path(__file__).resolve().parents[2] / "examples" / "bot.py"
_spec = importlib.util.spec_from_file_location("gridx_example_bot", _PATH)
assert _spec is not None and _spec.loader is not None
bot_module = importlib.util.module_from_spec(_spec)
sys.modules["gridx_example_bot"] = bot_module
_spec.loader.exec_module(bot_module)
Bot, Config = bot_module.Bot, bot_module.Config


def publish_price(cents: int, *, hours_ago: int = 1) -> None:
    """A cleared past round whose clearing price for H100s was `cents` per GPU-hour."""
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    round_ = Round.objects.create(
        number=1000 + hours_ago,
        status=RoundStatus.CLEARED,
        opened_at=now - dt.timedelta(hours=hours_ago + 1),
        cutoff_at=now - dt.timedelta(hours=hours_ago),
        horizon_start=now - dt.timedelta(hours=hours_ago),
        slot_minutes=60,
        slots=24,
    )
    PricePoint.objects.create(
        round=round_,
        cluster_code="acme/main",
        gpu_model="H100-SXM-80GB",
        slot_start=now - dt.timedelta(hours=hours_ago),
        cents_per_gpu_hour=cents,
    )


@pytest.fixture
def bot_client(live_market: LiveMarket):
    with GridxClient(live_market.url, live_market.raw_key) as client:
        yield client


def config(**changes: object) -> Config:
    base: dict[str, object] = {
        "gpu_model": "H100-SXM-80GB",
        "gpu_hours": 64,
        "budget_cents": 50_000,
        "max_limit_cents": 400,
        "factor": 1.10,
        "gpus": 8,
        "duration_hours": 4,
    }
    base.update(changes)
    return Config(**base)


def test_one_pass_bids_for_the_target_at_the_last_price_times_the_factor_within_budget(
    bot_client, live_market: LiveMarket
):
    publish_price(150, hours_ago=3)
    publish_price(200, hours_ago=1)  # the latest price is the one that counts

    result = Bot(bot_client, config()).step()

    bids = list(Bid.objects.filter(team=live_market.buyer.team, status=BidStatus.OPEN))
    assert result.round == live_market.round.number and not result.done
    assert result.limit_cents == 220  # ceil(200 x 1.10)
    assert {b.limit_cents_per_gpu_hour for b in bids} == {220}
    assert sum(b.gpus * b.duration_hours for b in bids) == 64
    assert sum(b.limit_cents_per_gpu_hour * b.gpus * b.duration_hours for b in bids) <= 50_000
    assert all(b.earliest_start >= live_market.start for b in bids)
    assert all(b.api_key == live_market.key for b in bids)


def test_a_tight_budget_buys_fewer_gpu_hours_and_never_overcommits(bot_client, live_market: LiveMarket):
    publish_price(200)

    Bot(bot_client, config(budget_cents=10_000)).step()

    bids = Bid.objects.filter(team=live_market.buyer.team, status=BidStatus.OPEN)
    exposure = sum(b.limit_cents_per_gpu_hour * b.gpus * b.duration_hours for b in bids)
    assert 0 < exposure <= 10_000
    assert 10_000 - exposure < 220 * 4  # one more GPU for one bid's hours would not have fitted


def test_the_price_is_capped_by_the_max_limit(bot_client, live_market: LiveMarket):
    publish_price(900)

    result = Bot(bot_client, config(max_limit_cents=300, budget_cents=1_000_000)).step()

    assert result.limit_cents == 300
    assert {b.limit_cents_per_gpu_hour for b in Bid.objects.filter(team=live_market.buyer.team)} == {300}


def test_a_second_pass_keeps_good_bids_and_replaces_them_when_the_price_moves(
    bot_client, live_market: LiveMarket
):
    publish_price(200, hours_ago=2)
    bot = Bot(bot_client, config())
    first = bot.step()
    again = bot.step()
    publish_price(250, hours_ago=1)
    moved = bot.step()

    assert len(first.placed) == 2
    assert sorted(again.kept) == sorted(b.id for b in first.placed) and not again.placed
    assert [old for old, _ in sorted(moved.replaced)] == sorted(b.id for b in first.placed)
    open_bids = Bid.objects.filter(team=live_market.buyer.team, status=BidStatus.OPEN)
    assert {b.limit_cents_per_gpu_hour for b in open_bids} == {275}
    assert open_bids.count() == 2


def test_when_the_target_is_already_won_it_cancels_its_bids_and_stops(bot_client, live_market: LiveMarket):
    bot = Bot(bot_client, config())
    placed = bot.step().placed

    result = Bot(bot_client, config(gpu_hours=0)).step()

    assert result.done
    assert sorted(result.cancelled) == sorted(b.id for b in placed)
    assert not Bid.objects.filter(team=live_market.buyer.team, status=BidStatus.OPEN).exists()
