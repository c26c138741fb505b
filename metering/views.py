"""Usage data for the web pages (mounted at /usage/): a lease's delivered GPU-seconds over time.

The buyer's lease page polls `lease_usage_json` every 30 s to redraw its chart. Reads go through
`metering.selectors.lease_usage`, which applies the acting team: another team's lease is a 404.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import Http404, HttpRequest, JsonResponse
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET

from marketplace.errors import NotFound
from marketplace.web import team_required

from .selectors import lease_usage


def _moment(text: str) -> dt.datetime:
    moment = parse_datetime(text)
    if moment is None:
        raise ValueError(f"not a time: {text}")
    return moment


def delivered_series(usage: dict[str, Any]) -> list[dict[str, Any]]:
    """Cumulative verified-delivered GPU-seconds from the lease start to `as_of`.

    Each GPU's delivered spans add one GPU-second per second while they last; the series has a
    point at every span boundary, so a straight line between points is exact.
    """
    start: dt.datetime = usage["start"]
    as_of: dt.datetime = usage["as_of"]
    steps: dict[dt.datetime, int] = {}
    for gpu in usage["gpus"]:
        for span in gpu["delivered"]:
            a, b = _moment(span["start"]), _moment(span["end"])
            steps[a] = steps.get(a, 0) + 1
            steps[b] = steps.get(b, 0) - 1
    points = [{"t": start.isoformat(), "gpu_seconds": 0}]
    rate, total, at = 0, 0.0, start
    for moment in sorted(m for m in steps if start <= m <= as_of):
        total += rate * (moment - at).total_seconds()
        rate += steps[moment]
        at = moment
        points.append({"t": moment.isoformat(), "gpu_seconds": int(total)})
    if as_of > at:
        total += rate * (as_of - at).total_seconds()
        points.append({"t": as_of.isoformat(), "gpu_seconds": int(total)})
    return points


@require_GET
@team_required()
def lease_usage_json(request: HttpRequest, lease_id: int) -> JsonResponse:
    """Delivered GPU-seconds of one of the team's leases, cumulative over time, for its chart."""
    try:
        usage = lease_usage(team=request.team, lease_id=lease_id)  # type: ignore[attr-defined]
    except NotFound:
        raise Http404("No such lease in your team.") from None
    return JsonResponse(
        {
            "lease": usage["lease_id"],
            "start": usage["start"].isoformat(),
            "end": usage["end"].isoformat(),
            "as_of": usage["as_of"].isoformat(),
            "complete": usage["complete"],
            "leased_gpu_seconds": usage["leased_gpu_seconds"],
            "delivered_gpu_seconds": usage["delivered_gpu_seconds"],
            "unhealthy_gpu_seconds": usage["unhealthy_gpu_seconds"],
            "points": delivered_series(usage),
        }
    )
