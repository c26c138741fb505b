"""A small live market around one open round."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
import time_machine

from auctions import services
from auctions.models import Round
from marketplace import services as market
from marketplace.models import Bid, Offer
from marketplace.specs import BidSpec, OfferSpec

# 09:20 on a 15-minute round grid: the open round's cutoff is 09:30; delivery starts at 10:00.
T0 = dt.datetime(2026, 12, 1, 9, 20, tzinfo=dt.UTC)
CUTOFF = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


@dataclass
class Market:
    round: Round
    offer: Offer
    bids: dict[str, Bid]


def bid_spec(start: dt.datetime, **changes: object) -> BidSpec:
    base: dict[str, object] = {
        "gpu_models": ("H100-SXM-80GB",),
        "gpus": 8,
        "min_gpus": 8,
        "duration_hours": 4,
        "earliest_start": start,
        "latest_end": start + 12 * H,
        "colocate": True,
        "limit_cents_per_gpu_hour": 300,
        "xor_group": "",
    }
    base.update(changes)
    return BidSpec(**base)  # type: ignore[arg-type]


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def live_market(acme, beta, clock) -> Market:
    """Acme offers its 16 H100s for 24 h at 180c; Beta bids: one wins, one is outbid, one cannot fit."""
    round_ = services.round_open()
    start = round_.horizon_start
    offer = market.offer_post(
        team=acme.team,
        actor=acme.trader,
        spec=OfferSpec(
            cluster_id=acme.cluster.pk,
            gpu_model="H100-SXM-80GB",
            gpus=16,
            start=start,
            end=start + 24 * H,
            reserve_cents_per_gpu_hour=180,
        ),
    )
    bids = {
        "big": services.bid_submit(
            team=beta.team,
            actor=beta.trader,
            idempotency_key="big",
            spec=bid_spec(
                start, gpus=16, min_gpus=16, limit_cents_per_gpu_hour=400, latest_end=start + 4 * H
            ),
        ).order,
        "small": services.bid_submit(
            team=beta.team,
            actor=beta.trader,
            idempotency_key="small",
            spec=bid_spec(start, gpus=8, min_gpus=8, limit_cents_per_gpu_hour=250, latest_end=start + 4 * H),
        ).order,
        "a100": services.bid_submit(
            team=beta.team,
            actor=beta.trader,
            idempotency_key="a100",
            spec=bid_spec(start, gpu_models=("A100-SXM-80GB",)),
        ).order,
    }
    return Market(round=round_, offer=offer, bids=bids)  # type: ignore[arg-type]
