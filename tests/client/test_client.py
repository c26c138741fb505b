"""The typed client against a live server on the real PostgreSQL: what a bot author relies on."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time

import httpx
import pytest
import time_machine

from auctions import services as auctions
from gridx_client import (
    AuthenticationError,
    GridxClient,
    IdempotencyConflict,
    NotFound,
    OfferRequest,
    ValidationError,
)
from gridx_client.errors import ServerError
from marketplace.models import Bid, BidStatus, IdempotencyRecord, Offer, OfferStatus
from tests.client.conftest import CountingTransport, H, LiveMarket, a_bid, api_key


def test_the_client_package_imports_no_django():
    code = (
        "import sys, gridx_client, gridx_client.webhooks; "
        "print(sorted(m for m in sys.modules if m.startswith('django')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_placed_bid_is_stored_for_the_key_s_team_in_the_open_round(client, live_market: LiveMarket):
    placed = client.place_bid(a_bid(live_market.start, gpus=8, limit_cents_per_gpu_hour=260))

    assert placed.round == live_market.round.number
    assert not placed.replayed
    assert placed.bid.status == "open"
    assert placed.bid.earliest_start == live_market.start
    assert placed.bid.api_key == live_market.key.prefix
    stored = Bid.objects.get(pk=placed.bid.id)
    assert stored.team == live_market.buyer.team
    assert (stored.gpus, stored.limit_cents_per_gpu_hour) == (8, 260)
    assert client.bid(placed.bid.id).receipt == stored.receipt


def test_a_batch_is_stored_whole_and_in_request_order(client, live_market: LiveMarket):
    specs = [a_bid(live_market.start, gpus=g, limit_cents_per_gpu_hour=200 + g) for g in (1, 2, 3, 4)]

    batch = client.place_bids(specs)

    assert [b.gpus for b in batch.bids] == [1, 2, 3, 4]
    assert [b.limit_cents_per_gpu_hour for b in batch.bids] == [201, 202, 203, 204]
    assert batch.round == live_market.round.number
    assert Bid.objects.filter(team=live_market.buyer.team).count() == 4


def test_calling_twice_with_one_idempotency_key_returns_the_same_bid_and_stores_one(
    client, live_market: LiveMarket
):
    bid = a_bid(live_market.start)

    first = client.place_bid(bid, idempotency_key="bot-round-7-bid-1")
    again = client.place_bid(bid, idempotency_key="bot-round-7-bid-1")

    assert again.bid.id == first.bid.id
    assert again.replayed and not first.replayed
    assert Bid.objects.filter(team=live_market.buyer.team).count() == 1


def test_the_same_key_with_other_terms_is_an_idempotency_conflict_and_stores_nothing_new(
    client, live_market: LiveMarket
):
    client.place_bid(a_bid(live_market.start, gpus=8), idempotency_key="k1")

    with pytest.raises(IdempotencyConflict) as caught:
        client.place_bid(a_bid(live_market.start, gpus=9), idempotency_key="k1")

    assert caught.value.status == 409 and caught.value.code == "idempotency_conflict"
    assert Bid.objects.filter(team=live_market.buyer.team).count() == 1


class LoseFirstAnswer(CountingTransport):
    """Delivers the first request to the server, then drops its answer as a broken connection would."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if len(self.requests) == 1:
            response.read()
            raise httpx.ReadError("connection reset after the server answered", request=request)
        return response


def test_a_retry_after_a_lost_answer_reuses_the_key_so_the_bid_is_placed_once(live_market: LiveMarket):
    transport = LoseFirstAnswer()
    with GridxClient(
        live_market.url, live_market.raw_key, max_retries=2, backoff_base=0.01, transport=transport
    ) as client:
        placed = client.place_bid(a_bid(live_market.start))

    keys = [r.headers["Idempotency-Key"] for r in transport.requests]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert transport.statuses == [201, 201]
    assert placed.replayed
    assert list(Bid.objects.filter(team=live_market.buyer.team).values_list("pk", flat=True)) == [
        placed.bid.id
    ]


def test_each_logical_call_gets_its_own_fresh_key(client, live_market: LiveMarket, transport):
    client.place_bid(a_bid(live_market.start))
    client.place_bid(a_bid(live_market.start))

    keys = {r.headers["Idempotency-Key"] for r in transport.requests}
    assert len(keys) == 2
    assert Bid.objects.filter(team=live_market.buyer.team).count() == 2


def test_a_bad_batch_raises_a_validation_error_naming_each_item_s_field(
    client, live_market: LiveMarket, transport
):
    good = a_bid(live_market.start)
    bad_min = a_bid(live_market.start, gpus=4, min_gpus=6)
    off_grid = a_bid(live_market.start + dt.timedelta(minutes=7))

    with pytest.raises(ValidationError) as caught:
        client.place_bids([good, bad_min, off_grid])

    error = caught.value
    assert error.status == 422 and error.code == "invalid_input"
    assert error.fields["bids[1].min_gpus"] == ["min_above_gpus"]
    assert "off_grid" in error.fields["bids[2].earliest_start"]
    assert "bids[0].gpus" not in error.fields
    assert len(transport.requests) == 1  # a 4xx other than 429 is never retried
    assert not Bid.objects.exists()
    assert not IdempotencyRecord.objects.exists()


def test_a_serializer_error_is_mapped_with_its_field_path(client, live_market: LiveMarket):
    naive = dt.datetime(2030, 1, 1, 10)  # noqa: DTZ001 - deliberately naive, sent as-is below
    with pytest.raises(ValidationError) as caught:
        client._call(
            "POST",
            "bids",
            body={**a_bid(live_market.start).to_json(), "earliest_start": naive.isoformat()},
            idempotent=True,
        )
    assert caught.value.fields["earliest_start"] == ["naive_datetime"]


def test_the_client_refuses_a_naive_time_before_sending(client, live_market: LiveMarket, transport):
    with pytest.raises(ValueError, match="no timezone"):
        client.place_bid(a_bid(live_market.start.replace(tzinfo=None)))
    assert transport.requests == []


def test_an_unknown_key_is_an_authentication_error(live_market: LiveMarket):
    with (
        GridxClient(live_market.url, "gx_000000000000_nope", max_retries=0) as client,
        pytest.raises(AuthenticationError) as caught,
    ):
        list(client.bids())
    assert caught.value.code == "bad_api_key"


def test_another_team_s_bid_is_not_found(client, live_market: LiveMarket):
    _, seller_raw = api_key(live_market.seller, name="other")
    with GridxClient(live_market.url, seller_raw) as seller:
        theirs = seller.place_bid(a_bid(live_market.start)).bid

    with pytest.raises(NotFound):
        client.bid(theirs.id)
    with pytest.raises(NotFound):
        client.cancel_bid(theirs.id)
    assert Bid.objects.get(pk=theirs.id).status == BidStatus.OPEN


def test_iterating_bids_follows_every_page_and_yields_each_bid_once(
    client, live_market: LiveMarket, transport
):
    placed = client.place_bids(
        [a_bid(live_market.start, limit_cents_per_gpu_hour=100 + i) for i in range(250)]
    )

    seen = list(client.bids(page_size=100))

    assert len(seen) == 250
    assert {b.id for b in seen} == {b.id for b in placed.bids}
    assert [b.id for b in seen] == sorted((b.id for b in seen), reverse=True)  # newest first
    assert sum(1 for r in transport.requests if r.url.path.endswith("/bids")) == 3


def test_replace_and_cancel_change_the_bid_s_status(client, live_market: LiveMarket):
    first = client.place_bid(a_bid(live_market.start, limit_cents_per_gpu_hour=200)).bid

    new = client.replace_bid(first.id, a_bid(live_market.start, limit_cents_per_gpu_hour=240)).bid
    cancelled = client.cancel_bid(new.id)
    again = client.cancel_bid(new.id)

    assert new.replaces == first.id
    assert client.bid(first.id).status == "replaced"
    assert cancelled.status == again.status == "cancelled"
    assert list(client.bids(status="open")) == []


def test_a_seller_posts_lists_and_cancels_an_offer(live_market: LiveMarket):
    with GridxClient(live_market.url, live_market.seller_raw_key) as seller:
        posted = seller.post_offer(
            OfferRequest(
                cluster=live_market.seller.cluster.pk,
                gpu_model="H100-SXM-80GB",
                gpus=16,
                start=live_market.start + 24 * H,
                end=live_market.start + 48 * H,
                reserve_cents_per_gpu_hour=190,
            )
        )
        listed = {o.id for o in seller.offers(status="live")}
        cancelled = seller.cancel_offer(posted.id)

    assert posted.round == live_market.round.number
    assert listed == {posted.id, live_market.offer.pk}
    assert cancelled.status == "cancelled"
    assert Offer.objects.get(pk=posted.id).status == OfferStatus.CANCELLED


def test_after_clearing_the_bot_sees_its_lease_the_round_report_and_the_price_index(
    client, live_market: LiveMarket
):
    market = client.clusters()
    placed = client.place_bid(a_bid(live_market.start, gpus=8, limit_cents_per_gpu_hour=300))
    auctions.round_close(round_id=live_market.round.pk, now=live_market.round.cutoff_at)
    assert auctions.round_clear(round_id=live_market.round.pk) == "cleared"

    leases = list(client.leases())
    cleared = client.round(live_market.round.number)
    prices = client.prices(gpu_model="H100-SXM-80GB")
    current = client.current_round()

    assert {c.code: c.gpus for c in market}[live_market.seller.cluster.code] == {"H100-SXM-80GB": 16}
    assert [(lease.bid, lease.gpus) for lease in leases] == [(placed.bid.id, 8)]
    assert leases[0].gpu_hours == 32
    assert len(client.lease(leases[0].id).gpu_assignments) == 8
    assert client.bid(placed.bid.id).outcomes[0].outcome == "won"
    assert cleared.status == "cleared" and cleared.report is not None
    assert prices and all(180 <= p.mean_cents_per_gpu_hour <= 300 for p in prices)
    assert current is not None and current.number == live_market.round.number + 1
    assert [r.number for r in client.rounds()] == [current.number, cleared.number]


def test_a_429_is_retried_after_the_servers_retry_after(live_market: LiveMarket):
    _, raw = api_key(live_market.buyer, name="slow bot", rate_limit_per_minute=2)
    transport = CountingTransport()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    # Three seconds before a minute boundary: the third call is refused until the next window.
    now = dt.datetime.now(dt.UTC)
    boundary = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=2)
    with (
        time_machine.travel(boundary - dt.timedelta(seconds=3), tick=True),
        GridxClient(live_market.url, raw, max_retries=4, transport=transport, sleep=sleep) as client,
    ):
        client.place_bid(a_bid(live_market.start))
        client.place_bid(a_bid(live_market.start))
        third = client.place_bid(a_bid(live_market.start))

    assert 429 in transport.statuses and transport.statuses[-1] == 201
    refused = transport.statuses.index(429)
    retry_after = float(transport.retry_afters[refused] or 0)
    assert slept[0] >= retry_after >= 1
    assert len({r.headers["Idempotency-Key"] for r in transport.requests[refused:]}) == 1
    assert Bid.objects.filter(team=live_market.buyer.team).count() == 3
    assert Bid.objects.filter(pk=third.bid.id).exists()


def test_server_errors_are_retried_with_the_same_key_and_then_raised():
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Idempotency-Key"])
        body = {"status": 503, "code": "unavailable", "detail": "try later", "errors": []}
        return httpx.Response(503, json=body, headers={"Content-Type": "application/problem+json"})

    client = GridxClient(
        "http://gridx.invalid",
        "gx_abc_def",
        max_retries=3,
        transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
    )
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(ServerError) as caught:
        client.place_bid(a_bid(start))

    assert caught.value.code == "unavailable"
    assert len(seen) == 4 and len(set(seen)) == 1
