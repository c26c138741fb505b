"""The buyer's pages: place (with alternatives), validate as you type, preview, my bids, my leases."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from auctions import services
from auctions.models import BidOutcome, Lease, Outcome, Round, RoundStatus
from marketplace.models import Bid, BidStatus, GpuModel
from tests.auctions.conftest import H, bid_spec
from tests.auctions.test_lifecycle import close_and_clear
from tests.conftest import _side
from tests.factories import BidFactory

pytestmark = pytest.mark.django_db

FMT = "%Y-%m-%dT%H:%M"


def row(start: dt.datetime, i: int = 0, **changes: Any) -> dict[str, Any]:
    """Form data of one bid row, as the browser posts it."""
    values: dict[str, Any] = {
        "gpu_models": ["H100-SXM-80GB"],
        "gpus": "8",
        "min_gpus": "",
        "duration_hours": "4",
        "earliest_start": start.strftime(FMT),
        "latest_end": (start + 12 * H).strftime(FMT),
        "colocate": "on",
        "limit": "2.50",
    }
    values.update(changes)
    return {f"row-{i}-{k}": v for k, v in values.items() if v is not None}


def form(*rows: dict[str, Any], key: str = "web-key-1") -> dict[str, Any]:
    data: dict[str, Any] = {
        "row-TOTAL_FORMS": str(len(rows)),
        "row-INITIAL_FORMS": "0",
        "row-MIN_NUM_FORMS": "1",
        "row-MAX_NUM_FORMS": "8",
        "idempotency_key": key,
    }
    for r in rows:
        data.update(r)
    return data


def errors_of(html: str, field_id: str) -> str:
    """The text of the error list next to one field (empty when it has none)."""
    match = re.search(rf'<ul class="errorlist" id="{re.escape(field_id)}_error"[^>]*>(.*?)</ul>', html, re.S)
    assert match, f"no error list for {field_id}"
    return re.sub(r"<[^>]+>", " ", match.group(1)).strip()


@pytest.fixture
def open_round(clock) -> Round:
    return services.round_open()


@pytest.fixture
def trader(client, beta):
    client.force_login(beta.trader)
    return client


# --- placing a bid -----------------------------------------------------------------------------------


def test_the_form_explains_every_field_and_names_the_open_round(trader, open_round):
    page = trader.get("/buy/new/")
    html = page.content.decode()
    assert page.status_code == 200
    for label in (
        "GPU model(s)",
        "GPUs",
        "Minimum GPUs (partial fill)",
        "Duration (hours)",
        "Earliest start (UTC)",
        "Latest end (UTC)",
        "All GPUs in one cluster",
        "Limit ($ per GPU-hour)",
    ):
        assert label in html
    assert "Leave empty for all or nothing" in html and "in dollars, e.g. 2.50" in html
    assert f"round {open_round.number}" in html
    assert 'hx-trigger="input changed delay:400ms' in html
    # Every input has a label pointing at it.
    for input_id in re.findall(r'<input[^>]+id="(id_row-0-[a-z_]+)"', html):
        assert f'for="{input_id}"' in html, input_id


def test_a_fraction_of_a_cent_is_refused_next_to_the_limit_while_typing(trader, open_round):
    start = open_round.horizon_start
    data = form(row(start, limit="2.505", gpus="", duration_hours=""))
    html = trader.post("/buy/new/validate/", data).content.decode()
    assert "fraction of a cent" in errors_of(html, "id_row-0-limit")
    assert "2.50 or 2.51" in errors_of(html, "id_row-0-limit")
    # Fields not filled in yet are not scolded while typing.
    assert errors_of(html, "id_row-0-gpus") == ""


def test_validation_uses_the_markets_rules_and_shows_the_live_maximum(trader, open_round):
    start = open_round.horizon_start
    data = form(
        row(start, gpus="4", min_gpus="6", earliest_start=(start + dt.timedelta(minutes=30)).strftime(FMT))
    )
    html = trader.post("/buy/new/validate/", data).content.decode()
    assert "cannot exceed" in errors_of(html, "id_row-0-min_gpus")
    assert "Minimum GPUs (6) cannot exceed GPUs (4)." in errors_of(html, "id_row-0-min_gpus")
    assert "slot grid" in errors_of(html, "id_row-0-earliest_start")
    assert errors_of(html, "id_row-0-limit") == ""
    assert "$40.00" in html  # 250 cents x 4 GPUs x 4 hours


def test_placing_a_bid_stores_cents_and_says_which_round(trader, open_round, beta):
    response = trader.post("/buy/new/", form(row(open_round.horizon_start, limit="3.07")), follow=True)
    bid = Bid.objects.get(team=beta.team)
    assert response.redirect_chain[-1][0] == f"/buy/bids/{bid.pk}/"
    assert bid.limit_cents_per_gpu_hour == 307 and bid.min_gpus == 8 and bid.placed_by == beta.trader
    assert (
        f"Bid {bid.pk} placed; it will be cleared in round {open_round.number}" in response.content.decode()
    )


def test_submitting_twice_places_one_bid(trader, open_round, beta):
    data = form(row(open_round.horizon_start))
    trader.post("/buy/new/", data)
    trader.post("/buy/new/", data)
    assert Bid.objects.filter(team=beta.team).count() == 1


def test_an_error_in_an_alternative_row_shows_there_and_nothing_is_placed(trader, open_round, beta):
    start = open_round.horizon_start
    data = form(row(start), row(start, 1, gpu_models=["A100-SXM-80GB"], gpus="2", min_gpus="3"))
    response = trader.post("/buy/new/", data)
    html = response.content.decode()
    assert response.status_code == 422
    assert "cannot exceed" in errors_of(html, "id_row-1-min_gpus")
    assert errors_of(html, "id_row-0-min_gpus") == ""
    assert not Bid.objects.filter(team=beta.team).exists()


def test_alternatives_are_placed_together_and_at_most_one_can_win(trader, open_round, beta):
    start = open_round.horizon_start
    data = form(row(start), row(start, 1, gpu_models=["A100-SXM-80GB"], limit="1.90"))
    response = trader.post("/buy/new/", data, follow=True)
    bids = list(Bid.objects.filter(team=beta.team).order_by("pk"))
    assert len(bids) == 2 and bids[0].xor_group and bids[0].xor_group == bids[1].xor_group
    assert [b.limit_cents_per_gpu_hour for b in bids] == [250, 190]
    assert "at most one wins" in response.content.decode()


def test_a_service_error_on_a_row_lands_on_that_rows_field(trader, open_round, beta, settings):
    settings.MAX_PRICE_CENTS_PER_GPU_HOUR = 1000
    start = open_round.horizon_start
    html = trader.post("/buy/new/", form(row(start), row(start, 1, limit="20.00"))).content.decode()
    assert "above the market&#x27;s cap of $10.00 per GPU-hour" in errors_of(html, "id_row-1-limit")
    assert errors_of(html, "id_row-0-limit") == ""


def test_adding_an_alternative_keeps_what_was_typed(trader, open_round):
    data = form(row(open_round.horizon_start, limit="4.25", gpus="16"))
    html = trader.post("/buy/new/rows/", {**data, "rows": "add"}).content.decode()
    assert 'name="row-TOTAL_FORMS" value="2"' in html
    assert 'name="row-1-limit" value="4.25"' in html and 'name="row-0-gpus" value="16"' in html
    assert "Remove this alternative" in html
    two = form(row(open_round.horizon_start, limit="4.25"), row(open_round.horizon_start, 1, limit="1.00"))
    html = trader.post("/buy/new/rows/", {**two, "rows": "remove-0"}).content.decode()
    assert 'name="row-TOTAL_FORMS" value="1"' in html and 'name="row-0-limit" value="1.00"' in html


def test_a_viewer_cannot_place_bids_but_sees_them(client, beta, open_round):
    client.force_login(beta.viewer)
    assert client.get("/buy/new/").status_code == 403
    assert client.post("/buy/new/", form(row(open_round.horizon_start))).status_code == 403
    assert not Bid.objects.filter(team=beta.team).exists()
    bid = BidFactory(team=beta.team)
    page = client.get("/buy/")
    assert page.status_code == 200 and f"Bid {bid.pk}" in page.content.decode()
    assert "Cancel bid" not in page.content.decode() and "Replace bid" not in page.content.decode()
    assert client.post(f"/buy/bids/{bid.pk}/cancel/").status_code == 403


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get("/buy/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- preview -----------------------------------------------------------------------------------------


def test_preview_says_in_a_sentence_whether_it_would_have_won_and_at_what_price(trader, live_market, clock):
    cleared = close_and_clear(live_market.round, clock)
    start = cleared.horizon_start
    data = form(row(start + 4 * H, limit="5.00", gpus="8"))
    html = trader.post("/buy/new/preview/", data).content.decode()
    assert f"Yes. In round {cleared.number} it would have won 8 × H100-SXM-80GB" in html
    assert "per GPU-hour; your limit is $5.00" in html
    html = trader.post("/buy/new/preview/", form(row(start, gpu_models=["L4-24GB"]))).content.decode()
    assert f"No, not in round {cleared.number}. No offer could serve it" in html


# --- my bids -----------------------------------------------------------------------------------------


def test_my_bids_show_each_outcome_and_the_losers_reason_as_advice(trader, live_market, clock):
    close_and_clear(live_market.round, clock)
    html = trader.get("/buy/").content.decode()
    big, small, a100 = (live_market.bids[k] for k in ("big", "small", "a100"))
    lease = Lease.objects.get(bid=big)
    assert f'href="/buy/leases/{lease.pk}/"' in html
    small_outcome = BidOutcome.objects.get(bid=small)
    assert small_outcome.reason in {"outbid", "no_offer"}
    assert "No offer could serve it" in html  # the A100 bid: nobody offers A100s
    # Two lost this round (they stay open); one won: its status and its outcome say so.
    assert html.count('class="badge lost"') == 2 and html.count('class="badge won"') == 2
    lost_only = trader.get("/buy/?status=won").content.decode()
    assert f"Bid {big.pk}" in lost_only and f"Bid {a100.pk}<" not in lost_only


def test_the_bid_page_shows_outcome_reason_receipt_and_proof(trader, live_market, clock):
    cleared = close_and_clear(live_market.round, clock)
    a100 = live_market.bids["a100"]
    html = trader.get(f"/buy/bids/{a100.pk}/").content.decode()
    assert "No offer could serve it" in html and a100.receipt in html
    assert f"gridx receipt_verify bid-{a100.pk}-proof.json" in html
    proof = trader.get(f"/buy/bids/{a100.pk}/proof.json").json()
    assert proof["root"] == cleared.merkle_root and proof["receipt"] == a100.receipt


def test_cancel_while_open_then_it_is_cancelled(trader, open_round, beta):
    bid = services.bid_submit(
        team=beta.team,
        actor=beta.trader,
        idempotency_key="k",
        spec=bid_spec(open_round.horizon_start),
    ).order
    response = trader.post(f"/buy/bids/{bid.pk}/cancel/", follow=True)
    bid.refresh_from_db()
    assert bid.status == BidStatus.CANCELLED and f"Bid {bid.pk} cancelled." in response.content.decode()
    again = trader.post(f"/buy/bids/{bid.pk}/cancel/", follow=True)
    assert again.status_code == 200


def test_replace_swaps_in_new_terms(trader, open_round, beta):
    trader.post("/buy/new/", form(row(open_round.horizon_start)))
    old = Bid.objects.get(team=beta.team)
    page = trader.get(f"/buy/bids/{old.pk}/edit/").content.decode()
    assert 'name="row-0-limit" value="2.50"' in page and f"Replace bid {old.pk}" in page
    response = trader.post(
        f"/buy/bids/{old.pk}/edit/", form(row(open_round.horizon_start, limit="2.75"), key="k2")
    )
    old.refresh_from_db()
    new = Bid.objects.get(replaces=old)
    assert old.status == BidStatus.REPLACED and new.limit_cents_per_gpu_hour == 275
    assert response["Location"] == f"/buy/bids/{new.pk}/"


def test_another_teams_bid_and_lease_are_not_found(client, acme, live_market, clock):
    close_and_clear(live_market.round, clock)
    gamma = _side("Gamma")
    big = live_market.bids["big"]
    lease = Lease.objects.get(bid=big)
    for user in (acme.trader, gamma.owner):
        client.force_login(user)
        for url in (
            f"/buy/bids/{big.pk}/",
            f"/buy/bids/{big.pk}/proof.json",
            f"/buy/bids/{big.pk}/edit/",
            f"/buy/leases/{lease.pk}/",
        ):
            assert client.get(url).status_code == 404, url
        assert client.post(f"/buy/bids/{big.pk}/cancel/").status_code == 404
        assert f"Bid {big.pk}" not in client.get("/buy/").content.decode()
    # Delivery data: a team with no part in the lease gets 404; the seller whose GPUs serve it may look.
    assert client.get(f"/usage/leases/{lease.pk}.json").status_code == 404
    client.force_login(acme.trader)
    assert client.get(f"/usage/leases/{lease.pk}.json").status_code == 200


# --- my leases ---------------------------------------------------------------------------------------


def test_the_lease_page_shows_gpus_times_price_and_the_chart_source(trader, live_market, clock):
    close_and_clear(live_market.round, clock)
    lease = Lease.objects.get(bid=live_market.bids["big"])
    listing = trader.get("/buy/leases/").content.decode()
    assert f"Lease {lease.pk}" in listing and "16 × H100-SXM-80GB" in listing
    html = trader.get(f"/buy/leases/{lease.pk}/").content.decode()
    assert f"{lease.start:%Y-%m-%d %H:%M} UTC" in html and "delivered so far" in html
    assert html.count("<code>GPU-") == 16
    assert f'data-url="/usage/leases/{lease.pk}.json"' in html and "vendor/chart.umd.js" in html
    data = trader.get(f"/usage/leases/{lease.pk}.json").json()
    assert data["leased_gpu_seconds"] == 0 and data["points"][0]["gpu_seconds"] == 0  # not started yet


# --- query counts ------------------------------------------------------------------------------------


def _many_bids_with_outcomes(team, n: int) -> None:
    model = GpuModel.objects.get(name="H100-SXM-80GB")
    now = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    for r in range(2):
        Round.objects.create(
            number=r + 1,
            status=RoundStatus.CLEARED,
            opened_at=now - 3 * H + r * H,
            cutoff_at=now - 2 * H + r * H,
            horizon_start=now,
            slot_minutes=60,
            slots=24,
        )
    rounds = list(Round.objects.order_by("number"))
    for i in range(n):
        bid = BidFactory(team=team, status=BidStatus.WON if i % 2 else BidStatus.OPEN)
        BidOutcome.objects.create(
            round=rounds[0],
            bid=bid,
            outcome=Outcome.LOST,
            reason="outbid",
            detail={"price_needed_cents_per_gpu_hour": 300},
        )
        if i % 2:
            lease = Lease.objects.create(
                round=rounds[1],
                bid=bid,
                team=team,
                gpu_model=model,
                gpus=8,
                start=now + H,
                end=now + 5 * H,
                payment_cents=8000,
            )
            BidOutcome.objects.create(round=rounds[1], bid=bid, outcome=Outcome.WON, lease=lease)


def test_my_bids_and_my_leases_take_a_fixed_number_of_queries(trader, beta, django_assert_max_num_queries):
    _many_bids_with_outcomes(beta.team, 60)
    with django_assert_max_num_queries(12):
        html = trader.get("/buy/").content.decode()
    assert "Bid a minimum of" not in html and html.count("Bid at least $3.00 per GPU-hour") >= 10
    with django_assert_max_num_queries(12):
        assert trader.get("/buy/?page=2&status=won").status_code == 200
    with django_assert_max_num_queries(10):
        html = trader.get("/buy/leases/").content.decode()
    assert html.count("/buy/leases/") >= 25
