"""Limits hold under real concurrency: threads with their own PostgreSQL connections."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connections
from django.utils import timezone

from marketplace import grid, services
from marketplace.errors import LimitExceeded
from marketplace.models import Bid, Offer
from marketplace.specs import BidSpec, OfferSpec

pytestmark = pytest.mark.django_db(transaction=True)


def _race(n: int, work) -> tuple[int, int]:
    """Run `work(i)` in n threads released together; count successes and limit refusals."""
    barrier = threading.Barrier(n)
    ok, refused, other = [], [], []

    def run(i: int) -> None:
        try:
            barrier.wait()
            work(i)
            ok.append(i)
        except LimitExceeded:
            refused.append(i)
        except Exception as exc:  # noqa: BLE001 - reported below
            other.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not other, other
    return len(ok), len(refused)


def test_concurrent_offers_never_oversell_a_clusters_inventory(acme):
    start = grid.slot_ceil(timezone.now()) + dt.timedelta(hours=1)
    spec = OfferSpec(
        cluster_id=acme.cluster.pk,
        gpu_model="H100-SXM-80GB",
        gpus=4,
        start=start,
        end=start + dt.timedelta(hours=8),
        reserve_cents_per_gpu_hour=200,
    )
    ok, refused = _race(10, lambda i: services.offer_post(team=acme.team, actor=acme.trader, spec=spec))
    assert (ok, refused) == (4, 6)  # 16 GPUs / 4 per offer
    assert sum(Offer.objects.values_list("gpus", flat=True)) == 16


def test_concurrent_bids_never_pass_the_open_bid_limit(acme, settings):
    settings.MAX_OPEN_BIDS = 5
    start = grid.slot_ceil(timezone.now()) + dt.timedelta(hours=1)
    spec = BidSpec(
        gpu_models=("H100-SXM-80GB",),
        gpus=2,
        min_gpus=2,
        duration_hours=2,
        earliest_start=start,
        latest_end=start + dt.timedelta(hours=6),
        colocate=True,
        limit_cents_per_gpu_hour=300,
    )
    ok, refused = _race(
        12,
        lambda i: services.bid_place(
            team=acme.team, actor=acme.trader, spec=spec, idempotency_key=f"race-{i}"
        ),
    )
    assert (ok, refused) == (5, 7)
    assert Bid.objects.filter(team=acme.team).count() == 5


def test_concurrent_retries_with_one_key_store_one_bid(acme):
    start = grid.slot_ceil(timezone.now()) + dt.timedelta(hours=1)
    spec = BidSpec(
        gpu_models=("H100-SXM-80GB",),
        gpus=2,
        min_gpus=2,
        duration_hours=2,
        earliest_start=start,
        latest_end=start + dt.timedelta(hours=6),
        colocate=True,
        limit_cents_per_gpu_hour=300,
    )
    ids: list[int] = []
    ok, _ = _race(
        8,
        lambda i: ids.append(
            services.bid_place(team=acme.team, actor=acme.trader, spec=spec, idempotency_key="same").pk
        ),
    )
    assert ok == 8 and len(set(ids)) == 1
    assert Bid.objects.filter(team=acme.team).count() == 1
