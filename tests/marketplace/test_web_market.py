"""The public market pages: open round, last prices, charts' data, past rounds and a round's report."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
import time_machine
from django.utils import timezone

from auctions.models import Lease, PricePoint, Round, RoundStatus
from marketplace.models import Bid, GpuModel
from tests.factories import BidFactory, ClusterFactory, OfferFactory, TeamFactory

pytestmark = pytest.mark.django_db

H = dt.timedelta(hours=1)
PAIRS = [("H100-SXM-80GB", "acme/main"), ("A100-SXM-80GB", "beta/east")]


def report_doc(number: int, previous: str, gpu_hours: float, welfare: int) -> dict[str, object]:
    return {
        "format": "gridx.report/v1",
        "round": number,
        "status": "optimal",
        "counts": {"bids": 7, "offers": 3, "awards": 2, "losers": 5},
        "gpu_hours_traded": gpu_hours,
        "welfare_cents": welfare,
        "bound_cents": welfare + 100,
        "gap": round(100 / (welfare + 100), 6),
        "solver": {"name": "HIGHS", "time_limit_s": 120, "gap": 0.001},
        "pricing": {"rule": "uniform", "uplift_cents": 0},
        "prices": [],
        "snapshot_sha256": hashlib.sha256(f"snap{number}".encode()).hexdigest(),
        "result_sha256": hashlib.sha256(f"result{number}".encode()).hexdigest(),
        "bids_merkle_root": hashlib.sha256(f"root{number}".encode()).hexdigest(),
        "previous_report_sha256": previous,
    }


def seed_market(*, now: dt.datetime, rounds: int = 3, slots: int = 4, open_round: bool = True) -> list[Round]:
    """`rounds` cleared rounds before `now`, each pricing `slots` hours of two (model, cluster) pairs
    and leasing 8 GPUs for 2 h; an open round; a live offer of 8 H100s for the next day."""
    team = TeamFactory()
    previous = "0" * 64
    made: list[Round] = []
    for i in range(rounds):
        number = i + 1
        cutoff = now - (rounds - i) * dt.timedelta(minutes=15)
        text = json.dumps(
            report_doc(number, previous, 16.0, 1000 * number), sort_keys=True, separators=(",", ":")
        )
        digest = hashlib.sha256(text.encode()).hexdigest()
        made.append(
            Round(
                number=number,
                status=RoundStatus.CLEARED,
                opened_at=cutoff - dt.timedelta(minutes=15),
                cutoff_at=cutoff,
                horizon_start=cutoff + H,
                slot_minutes=60,
                slots=24,
                report=text,
                report_sha256=digest,
                snapshot_sha256=hashlib.sha256(f"snap{number}".encode()).hexdigest(),
                cleared_at=cutoff + dt.timedelta(minutes=1),
            )
        )
        previous = digest
    Round.objects.bulk_create(made)
    made = list(Round.objects.order_by("number"))
    PricePoint.objects.bulk_create(
        PricePoint(
            round=r,
            gpu_model=model,
            cluster_code=cluster,
            slot_start=r.horizon_start - 6 * H + k * H,
            cents_per_gpu_hour=150 + 10 * r.number + k + 50 * p,
        )
        for r in made
        for p, (model, cluster) in enumerate(PAIRS)
        for k in range(slots)
    )
    h100 = GpuModel.objects.get(name="H100-SXM-80GB")
    bids = BidFactory.create_batch(rounds, team=team)
    Lease.objects.bulk_create(
        Lease(
            round=r,
            bid=bid,
            team=team,
            gpu_model=h100,
            cluster_code="acme/main",
            gpus=8,
            start=r.horizon_start,
            end=r.horizon_start + 2 * H,
            payment_cents=8 * 2 * 200,
        )
        for r, bid in zip(made, bids, strict=True)
    )
    if open_round:
        last = made[-1] if made else None
        Round.objects.create(
            number=(last.number if last else 0) + 1,
            status=RoundStatus.OPEN,
            opened_at=now - dt.timedelta(minutes=5),
            cutoff_at=now + dt.timedelta(minutes=10),
            horizon_start=now + 2 * H,
            slot_minutes=60,
            slots=24,
        )
    hour = now.replace(minute=0, second=0, microsecond=0)
    OfferFactory(cluster=ClusterFactory(team=team), gpus=8, start=hour + H, end=hour + 25 * H)
    return made


@pytest.fixture
def now():
    moment = dt.datetime(2026, 12, 1, 9, 20, tzinfo=dt.UTC)
    with time_machine.travel(moment, tick=False):
        yield moment


def test_an_empty_market_reads_well(client, gpu_catalogue):
    page = client.get("/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "No round is open right now" in text
    assert "No round has cleared yet" in text
    assert "No round has closed yet" in text
    assert "No trades in this range yet" in text
    assert "No GPUs are on offer" in text
    assert 'id="hours-chart"' not in text


def test_the_market_shows_the_open_round_last_prices_and_past_rounds(client, now, gpu_catalogue):
    rounds = seed_market(now=now)
    last = rounds[-1]
    text = client.get("/").content.decode()
    assert "Round <strong>4</strong> takes bids until" in text
    assert f'data-countdown="{(now + dt.timedelta(minutes=10)).isoformat()}"' in text
    assert "2026-12-01 09:30:00 UTC" in text  # the cutoff readable without JavaScript
    # The last round's prices by model and cluster, in dollars: H100 at 150 + 30 + 0..3 cents.
    assert "<td>H100-SXM-80GB</td><td>acme/main</td>" in text
    assert "$1.82" in text and "$1.80" in text and "$1.83" in text  # mean (181.5 → 182), lowest, highest
    assert "$2.30" in text  # A100 in beta/east, lowest
    # Past rounds link to their reports with the report hash, welfare and gap.
    assert f'href="/market/rounds/{last.number}/"' in text
    assert last.report_sha256[:14] in text
    assert "$30.00" in text  # round 3's welfare, 3000 cents


def test_the_market_page_embeds_the_charts_data(client, now, gpu_catalogue):
    seed_market(now=now)
    response = client.get("/")
    hours = json.loads(
        response.content.decode().split('id="hours-chart-data" type="application/json">')[1].split("<")[0]
    )
    assert hours == [{"round": n, "gpu_hours": 16.0} for n in (1, 2, 3)]
    supply = response.context["supply"]
    assert supply["series"] == [
        {"gpu_model": "H100-SXM-80GB", "gpu_hours": [8 * 14.0, 8 * 10.0, 0, 0, 0, 0, 0]}
    ]  # 10:00 → midnight today and midnight → 10:00 tomorrow
    chart = response.context["price_chart"]
    assert [s["label"] for s in chart["series"]] == ["A100-SXM-80GB · beta/east", "H100-SXM-80GB · acme/main"]


def test_sold_gpu_hours_are_taken_off_the_supply_chart(client, now, gpu_catalogue):
    seed_market(now=now, rounds=0)
    from auctions.models import LeaseSource
    from marketplace.models import Offer

    live = Offer.objects.get()
    bid = BidFactory(team=live.team)
    lease = Lease.objects.create(
        round=Round.objects.get(),
        bid=bid,
        team=live.team,
        gpu_model=live.gpu_model,
        gpus=4,
        start=now + 2 * H,
        end=now + 6 * H,
        payment_cents=0,
    )
    LeaseSource.objects.create(lease=lease, offer=live, gpus=4, revenue_cents=0)
    series = client.get("/").context["supply"]["series"]
    assert series[0]["gpu_hours"][:2] == [8 * 14.0 - 4 * 4, 8 * 10.0]


def test_price_filters_and_ranges_come_back_as_json(client, now, gpu_catalogue):
    seed_market(now=now)
    everything = client.get("/market/prices.json?range=24h").json()
    assert len(everything["series"]) == 2
    h100 = client.get("/market/prices.json", {"model": "H100-SXM-80GB", "range": "24h"}).json()
    assert [s["cluster"] for s in h100["series"]] == ["acme/main"]
    points = h100["series"][0]["points"]
    # Each slot is averaged over the rounds that priced it; times are milliseconds since the epoch.
    assert points == sorted(points) and all(150 <= cents <= 200 for _, cents in points)
    monthly = client.get("/market/prices.json", {"model": "H100-SXM-80GB", "range": "30d"}).json()
    assert monthly["range"] == "30d"
    assert len(monthly["series"][0]["points"]) == 1  # one UTC day
    unknown = client.get("/market/prices.json", {"model": "Z9000", "range": "1y"}).json()
    assert unknown["range"] == "24h" and len(unknown["series"]) == 2  # bad filters mean "all"


def test_the_market_page_makes_the_same_few_queries_however_many_rounds(
    client, now, gpu_catalogue, django_assert_max_num_queries
):
    seed_market(now=now, rounds=60, slots=24)
    assert PricePoint.objects.count() == 60 * 2 * 24
    with django_assert_max_num_queries(20):
        page = client.get("/")
    assert page.status_code == 200
    assert "Page 1 of 6" in page.content.decode()
    with django_assert_max_num_queries(20):
        older = client.get("/?page=6")
    assert 'href="/market/rounds/1/"' in older.content.decode()


def test_a_round_page_shows_its_report_and_how_to_verify_it(client, now, gpu_catalogue):
    rounds = seed_market(now=now)
    second = rounds[1]
    text = client.get(f"/market/rounds/{second.number}/").content.decode()
    report = json.loads(second.report)
    for digest in (
        second.report_sha256,
        report["snapshot_sha256"],
        report["result_sha256"],
        report["bids_merkle_root"],
        rounds[0].report_sha256,  # the previous report's hash: the chain link
    ):
        assert digest in text
    assert "How to verify this round" in text
    assert f"gridx round_verify {second.number}" in text and "gridx receipt_verify" in text
    assert "$20.00" in text  # welfare
    # The downloadable report is the exact bytes behind the published hash.
    body = client.get(f"/market/rounds/{second.number}/report.json").content
    assert hashlib.sha256(body).hexdigest() == second.report_sha256


def test_open_unknown_and_unreported_rounds(client, now, gpu_catalogue):
    seed_market(now=now, rounds=1)
    assert client.get("/market/rounds/2/").status_code == 404  # the open round has no report yet
    assert client.get("/market/rounds/99/").status_code == 404
    Round.objects.filter(number=1).update(status=RoundStatus.FAILED, report="", report_sha256="")
    failed = client.get("/market/rounds/1/")
    assert failed.status_code == 200 and "could not be cleared" in failed.content.decode()
    assert client.get("/market/rounds/1/report.json").status_code == 404


def test_no_bid_terms_appear_on_public_pages(client, now, gpu_catalogue):
    seed_market(now=now)
    bid = Bid.objects.first()
    assert bid is not None
    for url in ("/", "/market/rounds/1/", "/market/prices.json"):
        text = client.get(url).content.decode()
        assert f"b{bid.pk}" not in text and bid.idempotency_key not in text
        assert "limit_cents" not in text


def test_a_really_cleared_round_appears_on_the_market(client, gpu_catalogue):
    """The whole path: a round cleared by the engine shows its prices and links its report."""
    from auctions import services
    from marketplace.models import Role
    from tests.factories import GpuFactory, HostFactory, MembershipFactory, UserFactory

    with time_machine.travel(dt.datetime(2026, 12, 1, 9, 20, tzinfo=dt.UTC), tick=False) as clock:
        seller, buyer = TeamFactory(slug="acme"), TeamFactory(slug="beta")
        trader = UserFactory()
        MembershipFactory(team=buyer, user=trader, role=Role.TRADER)
        cluster = ClusterFactory(team=seller, name="main")
        GpuFactory.create_batch(8, host=HostFactory(cluster=cluster))
        round_ = services.round_open()
        start = round_.horizon_start
        OfferFactory(cluster=cluster, gpus=8, start=start, end=start + 24 * H)
        from tests.auctions.conftest import bid_spec

        services.bid_submit(
            team=buyer, actor=trader, idempotency_key="k", spec=bid_spec(start, limit_cents_per_gpu_hour=300)
        )
        clock.move_to(round_.cutoff_at + dt.timedelta(seconds=5))
        services.round_close_due()
        assert services.round_clear(round_id=round_.pk) == "cleared"
        round_.refresh_from_db()
        text = client.get("/").content.decode()
    assert "<td>H100-SXM-80GB</td><td>acme/main</td>" in text
    assert f'href="/market/rounds/{round_.number}/"' in text
    assert round_.report_sha256[:14] in text
    assert timezone.is_aware(round_.cleared_at)
