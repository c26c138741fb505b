"""Leases get specific GPUs in every slot, even when the free GPUs are fragmented over time."""

from __future__ import annotations

import datetime as dt

from auctions import services
from auctions.models import Lease, LeaseGpu, LeaseSource
from marketplace import services as market
from marketplace.models import Gpu, GpuModel
from marketplace.specs import OfferSpec

from .conftest import H, bid_spec


def _lease(round_, side, offer, start, hours, gpus, key):
    bid = market.bid_place(
        team=side.team, actor=None, spec=bid_spec(start, gpus=gpus, min_gpus=gpus), idempotency_key=key
    )
    lease = Lease.objects.create(
        round=round_,
        bid=bid,
        team=side.team,
        gpu_model=GpuModel.objects.get(name="H100-SXM-80GB"),
        cluster_code=offer.cluster.code,
        gpus=gpus,
        start=start,
        end=start + hours * H,
        payment_cents=1,
    )
    source = LeaseSource.objects.create(lease=lease, offer=offer, gpus=gpus, revenue_cents=1)
    return lease, source


def _occupy(lease, source, gpu, start, end):
    LeaseGpu.objects.create(lease=lease, source=source, gpu=gpu, start=start, end=end)


def test_fragmented_free_gpus_still_serve_a_lease_by_switching_gpus(acme, beta, clock):
    round_ = services.round_open()
    start = round_.horizon_start
    offer = market.offer_post(
        team=acme.team,
        actor=None,
        spec=OfferSpec(acme.cluster.pk, "H100-SXM-80GB", 16, start, start + 24 * H, 150),
    )
    gpus = list(Gpu.objects.filter(host__cluster=acme.cluster).order_by("uuid"))
    # All but two GPUs busy for the whole day; of those two, one busy early and one busy late, so
    # one GPU is free in every slot of [0 h, 4 h) but no single GPU is free throughout.
    blocker, blocker_source = _lease(round_, beta, offer, start, 24, 14, "block")
    for gpu in gpus[2:]:
        _occupy(blocker, blocker_source, gpu, start, start + 24 * H)
    early, early_source = _lease(round_, beta, offer, start, 2, 1, "early")
    _occupy(early, early_source, gpus[0], start, start + 2 * H)
    late, late_source = _lease(round_, beta, offer, start + 2 * H, 2, 1, "late")
    _occupy(late, late_source, gpus[1], start + 2 * H, start + 4 * H)

    lease, source = _lease(round_, beta, offer, start, 4, 1, "new")
    services._assign_gpus(lease=lease, source=source, offer=offer, gpus=1)

    rows = list(LeaseGpu.objects.filter(lease=lease).order_by("start").values_list("gpu_id", "start", "end"))
    assert rows == [(gpus[1].pk, start, start + 2 * H), (gpus[0].pk, start + 2 * H, start + 4 * H)]
    # Every slot of the lease is covered by exactly one GPU.
    covered = sum(((end - s) for _, s, end in rows), dt.timedelta())
    assert covered == 4 * H


def test_a_lease_keeps_one_gpu_when_it_can(acme, beta, clock):
    round_ = services.round_open()
    start = round_.horizon_start
    offer = market.offer_post(
        team=acme.team,
        actor=None,
        spec=OfferSpec(acme.cluster.pk, "H100-SXM-80GB", 16, start, start + 24 * H, 150),
    )
    lease, source = _lease(round_, beta, offer, start, 6, 4, "whole")
    services._assign_gpus(lease=lease, source=source, offer=offer, gpus=4)
    rows = list(LeaseGpu.objects.filter(lease=lease).values_list("start", "end"))
    assert len(rows) == 4 and set(rows) == {(start, start + 6 * H)}
