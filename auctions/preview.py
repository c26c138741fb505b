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

from . import engine, selectors
from .models import Round, RoundStatus

PREVIEW_ID = "preview"


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
    bid = selectors.bid_document(
        ref=PREVIEW_ID, team_slug=team.slug, gpu_models=list(spec.gpu_models), terms=spec, round_=round_
    )
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
