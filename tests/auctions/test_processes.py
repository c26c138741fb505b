"""The round lifecycle with real Celery worker and beat processes, crashes and races included."""

from __future__ import annotations

import datetime as dt
import json
import random
import signal
import threading

import pytest
from django.db import connections
from django.utils import timezone

from auctions import engine, services
from auctions.models import Lease, Round, RoundStatus
from marketplace import grid
from marketplace import services as market
from marketplace.models import Bid, BidStatus
from marketplace.specs import BidSpec, OfferSpec
from tests.processes import flush_broker, process_env, running, start_beat, start_worker, stop, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
H = dt.timedelta(hours=1)


def _book(acme, beta, *, bids: int, seed: int, key: str) -> list[Bid]:
    """Both teams offer their 16 H100s for two days; Beta and Acme bid for pieces of them."""
    start = grid.slot_ceil(timezone.now())
    for side in (acme, beta):
        if not side.team.offers.exists():
            market.offer_post(
                team=side.team,
                actor=side.trader,
                spec=OfferSpec(
                    cluster_id=side.cluster.pk,
                    gpu_model="H100-SXM-80GB",
                    gpus=16,
                    start=start,
                    end=start + 48 * H,
                    reserve_cents_per_gpu_hour=150,
                ),
            )
    rng = random.Random(seed)
    placed = []
    for i in range(bids):
        side = (acme, beta)[i % 2]
        gpus = rng.choice([2, 4, 8, 12])
        hours = rng.randint(2, 10)
        placed.append(
            market.bid_place(
                team=side.team,
                actor=side.trader,
                idempotency_key=f"{key}-{i}",
                spec=BidSpec(
                    gpu_models=("H100-SXM-80GB",),
                    gpus=gpus,
                    min_gpus=rng.choice([1, gpus]),
                    duration_hours=hours,
                    earliest_start=start + rng.randint(0, 6) * H,
                    latest_end=start + 47 * H,
                    colocate=rng.random() < 0.7,
                    limit_cents_per_gpu_hour=rng.randint(140, 400),
                ),
            )
        )
    return placed


def test_a_round_lives_its_whole_life_under_real_beat_and_worker(acme, beta, tmp_path):
    flush_broker()
    bids = _book(acme, beta, bids=12, seed=1, key="life")
    env = process_env(ROUND_INTERVAL_SECONDS="3", ROUND_TICK_SECONDS="1", SOLVER_TIME_LIMIT_SECONDS="20")
    worker = start_worker(env, tmp_path / "worker.log", name="life")
    beat = start_beat(env, tmp_path / "beat.log", tmp_path / "beat-schedule")
    with running(beat, worker):
        cleared = wait_for(
            lambda: Round.objects.filter(status=RoundStatus.CLEARED).order_by("number").first(),
            timeout=90,
            what=f"a cleared round; logs in {tmp_path}",
        )
    snapshot = json.loads(cleared.snapshot)
    assert {b["id"] for b in snapshot["bids"]} == {f"b{b.pk}" for b in bids}
    result = json.loads(cleared.result)
    assert Lease.objects.filter(round=cleared).count() == len(result["awards"]) > 0
    won = set(Bid.objects.filter(status=BidStatus.WON).values_list("pk", flat=True))
    assert won == {int(a["bid"][1:]) for a in result["awards"]}
    assert Round.objects.filter(status=RoundStatus.OPEN).count() == 1


def test_a_worker_killed_mid_clearing_is_recovered_with_the_undisturbed_result(
    acme, beta, tmp_path, settings
):
    settings.CLEARING_STALE_SECONDS = 15  # the sweep runs in this process; longer than one solve
    flush_broker()
    rng = random.Random(7)
    for trial in range(3):
        _book(acme, beta, bids=30, seed=trial, key=f"kill{trial}")
        open_round = services.round_open()
        closed = services.round_close(round_id=open_round.pk)  # queues the clearing on commit
        assert closed is not None
        expected = services.result_hash(
            engine.clear(json.loads(closed.snapshot), time_limit=20.0, gap=1e-4, workers=1)
        )
        env = process_env(SOLVER_TIME_LIMIT_SECONDS="20", CLEARING_STALE_SECONDS="15")
        victim = start_worker(env, tmp_path / f"victim{trial}.log", name=f"victim{trial}")
        with running(victim):
            wait_for(
                lambda pk=closed.pk: Round.objects.filter(pk=pk).exclude(status=RoundStatus.CLOSED).exists(),
                timeout=60,
                what="the clearing to start",
            )
            threading.Event().wait(rng.uniform(0.0, 1.5))
            stop(victim, signal.SIGKILL)
        # Never a partial clearing: leases exist only together with the cleared status.
        closed.refresh_from_db()
        if closed.status != RoundStatus.CLEARED:
            assert not Lease.objects.filter(round=closed).exists()
        rescuer = start_worker(env, tmp_path / f"rescuer{trial}.log", name=f"rescuer{trial}")
        with running(rescuer):

            def recovered(pk: int = closed.pk) -> bool:
                services.round_clear_sweep()
                return Round.objects.filter(pk=pk, status=RoundStatus.CLEARED).exists()

            wait_for(recovered, timeout=90, interval=2.0, what=f"the sweep to re-clear; logs in {tmp_path}")
        closed.refresh_from_db()
        assert closed.result_sha256 == expected
        assert Lease.objects.filter(round=closed).count() == len(json.loads(closed.result)["awards"])


def test_two_beat_processes_never_open_or_clear_a_round_twice(acme, beta, tmp_path):
    flush_broker()
    _book(acme, beta, bids=6, seed=3, key="beats")
    env = process_env(ROUND_INTERVAL_SECONDS="2", ROUND_TICK_SECONDS="1", SOLVER_TIME_LIMIT_SECONDS="10")
    worker = start_worker(env, tmp_path / "worker.log", name="beats")
    beats = [start_beat(env, tmp_path / f"beat{i}.log", tmp_path / f"schedule{i}") for i in range(2)]
    with running(*beats, worker):
        wait_for(
            lambda: Round.objects.filter(status=RoundStatus.CLEARED).count() >= 4,
            timeout=90,
            what=f"four cleared rounds; logs in {tmp_path}",
        )
    for b in beats:
        stop(b)
    rounds = list(Round.objects.order_by("number"))
    numbers = [r.number for r in rounds]
    assert numbers == list(range(1, len(rounds) + 1))
    assert len({r.cutoff_at for r in rounds}) == len(rounds)
    assert all(r.clearing_attempts == 1 for r in rounds if r.status == RoundStatus.CLEARED)


def test_every_bid_placed_across_the_cutoff_is_in_exactly_the_round_it_was_told(acme, beta):
    services.round_open()
    start = grid.slot_ceil(timezone.now()) + H
    told: list[tuple[int, int | None]] = []
    errors: list[BaseException] = []
    go = threading.Barrier(5)

    def bidder(side, n: int) -> None:
        try:
            go.wait()
            for i in range(15):
                placed = services.bid_submit(
                    team=side.team,
                    actor=side.trader,
                    idempotency_key=f"race-{n}-{i}",
                    spec=BidSpec(
                        gpu_models=("H100-SXM-80GB",),
                        gpus=1,
                        min_gpus=1,
                        duration_hours=1,
                        earliest_start=start,
                        latest_end=start + 4 * H,
                        colocate=True,
                        limit_cents_per_gpu_hour=200,
                    ),
                )
                told.append((placed.order.pk, placed.round_number))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=bidder, args=((acme, beta)[n % 2], n)) for n in range(4)]
    for t in threads:
        t.start()
    go.wait()
    for _ in range(3):  # close three times while the bids pour in
        threading.Event().wait(0.05)
        services.round_close(round_id=Round.objects.get(status=RoundStatus.OPEN).pk)
    for t in threads:
        t.join()
    services.round_close(round_id=Round.objects.get(status=RoundStatus.OPEN).pk)
    assert not errors, errors
    snapshots = {r.number: json.loads(r.snapshot) for r in Round.objects.exclude(snapshot="")}
    assert len(told) == 60 and len(snapshots) == 4
    for pk, number in told:
        assert number is not None
        assert f"b{pk}" in {b["id"] for b in snapshots[number]["bids"]}
        assert f"b{pk}" not in {b["id"] for b in snapshots.get(number - 1, {"bids": []})["bids"]}
