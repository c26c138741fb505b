"""A round's life in one process: open, close at the cutoff, clear, leases and outcomes out."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connections, transaction

from auctions import engine, merkle, services
from auctions.models import (
    BidOutcome,
    Lease,
    LeaseGpu,
    Notification,
    OfferFill,
    PricePoint,
    Round,
    RoundStatus,
)
from auctions.verify import verify_receipt, verify_round
from config.celery import app
from marketplace import services as market
from marketplace.errors import Conflict
from marketplace.models import BidStatus, GpuModel
from marketplace.receipts import bid_receipt_document
from marketplace.specs import OfferSpec
from tests.auctions.conftest import CUTOFF, H, bid_spec
from tests.factories import ClusterFactory, GpuFactory, HostFactory

pytestmark = pytest.mark.django_db


def close_and_clear(round_: Round, clock) -> Round:
    clock.move_to(CUTOFF + dt.timedelta(seconds=5))
    assert services.round_close_due()["closed"] == round_.number
    assert services.round_clear(round_id=round_.pk) == "cleared"
    round_.refresh_from_db()
    return round_


def test_a_round_opens_once_and_closes_only_at_its_cutoff(live_market, clock):
    assert services.round_open().pk == live_market.round.pk
    assert live_market.round.cutoff_at == CUTOFF
    assert services.round_close_due()["closed"] is None
    clock.move_to(CUTOFF)
    summary = services.round_close_due()
    assert summary == {"closed": live_market.round.number, "open": live_market.round.number + 1}


def test_the_database_allows_only_one_open_round(live_market):
    with pytest.raises(IntegrityError), transaction.atomic():
        Round.objects.create(
            number=99,
            status=RoundStatus.OPEN,
            opened_at=CUTOFF,
            cutoff_at=CUTOFF + H,
            horizon_start=CUTOFF + H,
            slot_minutes=60,
            slots=24,
        )


def test_clearing_turns_awards_into_leases_with_specific_gpus_and_outcomes(live_market, clock, acme, beta):
    round_ = close_and_clear(live_market.round, clock)
    big, small, a100 = (live_market.bids[k] for k in ("big", "small", "a100"))
    lease = Lease.objects.get(bid=big)
    assert (lease.team, lease.gpus, lease.start, lease.end) == (
        beta.team,
        16,
        round_.horizon_start,
        round_.horizon_start + 4 * H,
    )
    assert 180 * 16 * 4 <= lease.payment_cents <= 400 * 16 * 4  # individually rational both ways
    gpus = list(LeaseGpu.objects.filter(lease=lease).values_list("gpu__host__cluster", flat=True))
    assert len(gpus) == 16 and set(gpus) == {acme.cluster.pk}
    big.refresh_from_db()
    small.refresh_from_db()
    assert big.status == BidStatus.WON
    assert small.status == BidStatus.OPEN  # lost this round, stays live for the next
    outcomes = {o.bid_id: o for o in BidOutcome.objects.filter(round=round_)}
    assert outcomes[big.pk].outcome == "won" and outcomes[big.pk].lease == lease
    assert outcomes[small.pk].outcome == "lost" and outcomes[small.pk].reason
    assert outcomes[a100.pk].outcome == "lost"
    fill = OfferFill.objects.get(round=round_, offer=live_market.offer)
    assert fill.gpu_hours_sold == 64 and fill.revenue_cents == lease.sources.get().revenue_cents
    assert fill.revenue_cents <= lease.payment_cents  # no deficit
    assert PricePoint.objects.filter(round=round_).exists()
    assert set(Notification.objects.filter(team=beta.team).values_list("event", flat=True)) == {
        "bid.won",
        "bid.lost",
        "round.cleared",
    }


def test_a_round_cleared_twice_creates_its_leases_once(live_market, clock):
    round_ = close_and_clear(live_market.round, clock)
    assert services.round_clear(round_id=round_.pk) == "skipped"
    assert Lease.objects.filter(round=round_).count() == 1


def test_the_next_round_clears_what_is_left_and_never_double_books_a_gpu(live_market, clock, beta):
    first = close_and_clear(live_market.round, clock)
    second = Round.objects.get(status=RoundStatus.OPEN)
    snapshot = json.loads(first.snapshot)
    assert [o["gpus"] for o in snapshot["offers"]] == [16]
    clock.move_to(second.cutoff_at)
    services.round_close_due()
    second.refresh_from_db()
    pieces = json.loads(second.snapshot)["offers"]
    # The first 4 hours are sold: the offer comes back as one piece with the rest of its window.
    assert [(p["start_slot"], p["gpus"]) for p in pieces][-1][1] == 16
    assert all(p["id"].startswith(f"o{live_market.offer.pk}") for p in pieces)
    services.round_clear(round_id=second.pk)
    for lg in LeaseGpu.objects.all():
        clash = LeaseGpu.objects.filter(gpu=lg.gpu, start__lt=lg.end, end__gt=lg.start).exclude(pk=lg.pk)
        assert not clash.exists()


def test_one_gpu_can_never_be_in_two_overlapping_leases_even_by_direct_insert(live_market, clock):
    close_and_clear(live_market.round, clock)
    taken = LeaseGpu.objects.first()
    with pytest.raises(IntegrityError), transaction.atomic():
        LeaseGpu.objects.create(
            lease=taken.lease, source=taken.source, gpu=taken.gpu, start=taken.start + H, end=taken.end + H
        )


def test_the_report_chains_hashes_and_verifies_and_a_changed_snapshot_does_not(live_market, clock):
    first = close_and_clear(live_market.round, clock)
    report = json.loads(first.report)
    assert report["previous_report_sha256"] == "0" * 64
    assert report["snapshot_sha256"] == first.snapshot_sha256
    verdict = verify_round(
        report_text=first.report,
        snapshot_text=first.snapshot,
        result_text=first.result,
        previous_report_text=None,
    )
    assert verdict.ok, verdict.failures
    tampered = first.snapshot.replace('"limit_cents_per_gpu_hour":250', '"limit_cents_per_gpu_hour":251')
    assert tampered != first.snapshot
    bad = verify_round(
        report_text=first.report, snapshot_text=tampered, result_text=first.result, previous_report_text=None
    )
    assert "snapshot SHA-256 matches the report" in bad.failures

    second = Round.objects.get(status=RoundStatus.OPEN)
    clock.move_to(second.cutoff_at)
    services.round_close_due()
    services.round_clear(round_id=second.pk)
    second.refresh_from_db()
    assert json.loads(second.report)["previous_report_sha256"] == first.report_sha256
    call_command("round_verify", str(second.number))


def test_a_bids_receipt_proves_it_was_in_the_round_without_revealing_it(live_market, clock):
    round_ = close_and_clear(live_market.round, clock)
    bid = live_market.bids["small"]
    receipts = [b.receipt for b in live_market.bids.values()]
    assert round_.merkle_root == merkle.merkle_root(receipts)
    proof = merkle.inclusion_proof(receipts, bid.receipt)
    verdict = verify_receipt(
        receipt_document=bid_receipt_document(bid), receipt=bid.receipt, proof=proof, root=round_.merkle_root
    )
    assert verdict.ok
    assert bid.receipt not in round_.report  # only the root is published


def test_cancelling_a_bid_that_a_closed_round_is_clearing_is_refused(live_market, clock, beta):
    clock.move_to(CUTOFF)
    services.round_close_due()
    with pytest.raises(Conflict):
        services.bid_withdraw(team=beta.team, actor=beta.trader, bid_id=live_market.bids["small"].pk)


def test_exported_snapshot_re_clears_to_the_stored_result(live_market, clock, tmp_path):
    round_ = close_and_clear(live_market.round, clock)
    call_command("round_export", str(round_.number), "--dir", str(tmp_path))
    again = engine.clear(
        json.loads((tmp_path / f"round-{round_.number}.json").read_text()),
        workers=1,
        time_limit=120.0,
        gap=1e-4,
    )
    stored = json.loads(round_.result)
    assert services.result_hash(again) == services.result_hash(stored) == round_.result_sha256


@pytest.mark.django_db(transaction=True)
def test_a_round_cleared_twice_concurrently_creates_its_leases_once(live_market, clock):
    clock.move_to(CUTOFF)
    services.round_close_due()
    outcomes: list[str] = []

    def clear() -> None:
        try:
            outcomes.append(services.round_clear(round_id=live_market.round.pk))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=clear) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["cleared", "skipped"]
    assert Lease.objects.filter(round=live_market.round).count() == 1


def test_the_status_page_shows_cleared_rounds_and_their_report_hash(live_market, clock, client):
    round_ = close_and_clear(live_market.round, clock)
    page = client.get("/").content.decode()
    assert f'href="/market/rounds/{round_.number}/"' in page and "cleared" in page
    assert round_.report_sha256[:14] in page
    assert f"b{live_market.bids['small'].pk}" not in page  # sealed: no bid appears


def test_independent_sub_markets_are_cleared_as_a_chord_and_merge_to_the_single_process_result(
    live_market, clock, acme, beta, settings
):
    settings.CLEARING_SCALE_OUT = True
    # A second, independent sub-market: A100s offered and bid for in another cluster.
    start = live_market.round.horizon_start
    cluster = ClusterFactory(team=acme.team, name="a100s")
    GpuFactory.create_batch(
        8, host=HostFactory(cluster=cluster), gpu_model=GpuModel.objects.get(name="A100-SXM-80GB")
    )
    market.offer_post(
        team=acme.team,
        actor=acme.trader,
        spec=OfferSpec(
            cluster_id=cluster.pk,
            gpu_model="A100-SXM-80GB",
            gpus=8,
            start=start,
            end=start + 24 * H,
            reserve_cents_per_gpu_hour=90,
        ),
    )
    services.bid_submit(
        team=beta.team,
        actor=beta.trader,
        idempotency_key="a100-2",
        spec=bid_spec(start, gpu_models=("A100-SXM-80GB",), gpus=4, min_gpus=4),
    )
    clock.move_to(CUTOFF)
    services.round_close_due()
    round_ = Round.objects.get(pk=live_market.round.pk)
    document = json.loads(round_.snapshot)
    assert len(engine.split(document)) > 1
    app.conf.task_always_eager = True
    try:
        assert services.round_clear(round_id=round_.pk) == "dispatched"
    finally:
        app.conf.task_always_eager = False
    round_.refresh_from_db()
    assert round_.status == RoundStatus.CLEARED
    whole = engine.clear(document, workers=1, time_limit=120.0, gap=1e-4)
    assert round_.result_sha256 == services.result_hash(whole)
    assert Lease.objects.filter(round=round_).count() == len(whole["awards"])
    assert {a["gpu_model"] for a in whole["awards"]} == {"H100-SXM-80GB", "A100-SXM-80GB"}


def test_a_team_fetches_an_inclusion_proof_for_its_own_bid_only(live_market, clock, acme, beta, tmp_path):
    from auctions.selectors import bid_inclusion_proof
    from marketplace.errors import NotFound

    round_ = close_and_clear(live_market.round, clock)
    bid = live_market.bids["small"]
    proof = bid_inclusion_proof(team=beta.team, bid_id=bid.pk, round_number=round_.number)
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof))
    call_command("receipt_verify", str(path))
    with pytest.raises(NotFound):
        bid_inclusion_proof(team=acme.team, bid_id=bid.pk, round_number=round_.number)
    proof["document"]["limit_cents_per_gpu_hour"] += 1  # a changed term no longer matches
    path.write_text(json.dumps(proof))
    with pytest.raises(CommandError):
        call_command("receipt_verify", str(path))


def test_staff_download_a_rounds_snapshot_from_the_admin(live_market, clock, admin_client):
    round_ = close_and_clear(live_market.round, clock)
    response = admin_client.get(f"/admin/auctions/round/{round_.pk}/file/snapshot/")
    assert response.status_code == 200
    assert response.content.decode() == round_.snapshot
    assert "round-" in response["Content-Disposition"]
