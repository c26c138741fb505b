"""Bid preview: would this bid have won in the last cleared round, and at what price?

The round's frozen snapshot is cleared again with the bid added, by the same engine and options
(a shorter time limit). Nothing is stored and no other bid is revealed: the answer is about the
caller's bid only.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.conf import settings
from django.utils import timezone

from marketplace import services as market
from marketplace.errors import InvalidInput, NotFound
from marketplace.models import GpuModel, Team
from marketplace.specs import BidSpec

from . import engine
from .models import Round, RoundStatus

PREVIEW_ID = "preview"


def _bid_document(spec: BidSpec, *, team: Team, round_: Round) -> dict[str, Any] | None:
    """The bid as a gridx.round/v1 bid of `round_`, or None when its window misses the horizon."""
    slot = dt.timedelta(minutes=round_.slot_minutes)
    hs = round_.horizon_start
    first = max(int((spec.earliest_start - hs) / slot), 0)
    last = min(int((spec.latest_end - hs) / slot), round_.slots)
    duration = spec.duration_hours * (60 // round_.slot_minutes)
    if last - first < duration:
        return None
    doc: dict[str, Any] = {
        "id": PREVIEW_ID,
        "team": team.slug,
        "gpu_models": sorted(set(spec.gpu_models)),
        "gpus": spec.gpus,
        "min_gpus": spec.min_gpus,
        "duration_slots": duration,
        "earliest_start_slot": first,
        "latest_end_slot": last,
        "colocate": spec.colocate,
        "limit_cents_per_gpu_hour": spec.limit_cents_per_gpu_hour,
    }
    return doc


def bid_preview(*, team: Team, spec: BidSpec) -> dict[str, Any]:
    known = set(GpuModel.objects.values_list("name", flat=True))
    # The window may lie in the past relative to now: the question is about the last round.
    errors = [
        e
        for e in market.bid_spec_errors(spec, now=spec.earliest_start - dt.timedelta(days=1), known=known)
        if e.code not in {"in_past", "beyond_horizon"}
    ]
    if errors:
        raise InvalidInput(errors)
    round_ = Round.objects.filter(status=RoundStatus.CLEARED).order_by("-number").first()
    if round_ is None:
        raise NotFound("no round has cleared yet, so there is nothing to preview against")
    base: dict[str, Any] = {
        "round": round_.number,
        "would_win": False,
        "gpus": 0,
        "gpu_model": None,
        "cluster": None,
        "start": None,
        "end": None,
        "payment_cents": 0,
        "cents_per_gpu_hour": None,
        "detail": {},
        "status": "optimal",
    }
    bid = _bid_document(spec, team=team, round_=round_)
    if bid is None:
        hs = round_.horizon_start
        he = hs + round_.slots * dt.timedelta(minutes=round_.slot_minutes)
        return {
            **base,
            "reason": "outside_horizon",
            "detail": {"horizon_start": hs.isoformat(), "horizon_end": he.isoformat()},
        }
    document = json.loads(round_.snapshot)
    document["bids"].append(bid)
    result = engine.clear(
        document,
        time_limit=float(settings.PREVIEW_TIME_LIMIT_SECONDS),
        gap=float(settings.CLEARING_GAP),
    )
    base["status"] = result["status"]
    award = next((a for a in result.get("awards", []) if a["bid"] == PREVIEW_ID), None)
    if award is None:
        loss: dict[str, Any] = next((x for x in result.get("losers", []) if x["bid"] == PREVIEW_ID), {})
        detail = {k: v for k, v in loss.items() if k not in {"bid", "reason"}}
        return {**base, "reason": loss.get("reason", "not_cleared"), "detail": detail}
    slot = dt.timedelta(minutes=round_.slot_minutes)
    hours = award["gpus"] * (award["end_slot"] - award["start_slot"]) * round_.slot_minutes / 60
    return {
        **base,
        "would_win": True,
        "gpus": award["gpus"],
        "gpu_model": award["gpu_model"],
        "cluster": award.get("cluster"),
        "start": round_.horizon_start + award["start_slot"] * slot,
        "end": round_.horizon_start + award["end_slot"] * slot,
        "payment_cents": award["payment_cents"],
        "cents_per_gpu_hour": round(award["payment_cents"] / hours) if hours else None,
        "reason": None,
        "detail": {"previewed_at": timezone.now().isoformat()},
    }
