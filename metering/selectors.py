"""Metering reads: verified delivery for billing, lease usage for its teams, anomalies for staff."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from auctions.models import Lease, LeaseGpu
from marketplace.errors import InvalidInput, NotFound
from marketplace.models import Team

from .models import Anomaly, AnomalyStatus, Envelope, HostKey, KeyStatus
from .services import EPOCH, lease_gpu_delivery


@dataclass(frozen=True)
class LeaseDelivery:
    """Verified delivery of one lease over a window, in whole GPU-seconds."""

    lease_id: int
    start: datetime  # the window asked for, clipped to the lease
    end: datetime
    leased_gpu_seconds: int  # GPUs x seconds of the lease inside the window
    delivered_gpu_seconds: int  # of which verified delivered
    open_anomalies: int  # anomalies touching the lease in the window not yet resolved
    complete: bool  # False while reports for the window may still arrive (grace not passed)


def _anomalies_touching(lease: Lease, lo: dt.datetime, hi: dt.datetime) -> QuerySet[Anomaly]:
    gpu_ids = LeaseGpu.objects.filter(lease=lease).values("gpu_id")
    overlapping = (Q(start__isnull=True) | Q(start__lt=hi)) & (Q(end__isnull=True) | Q(end__gt=lo))
    return Anomaly.objects.filter(
        (Q(lease=lease) | Q(lease__isnull=True, gpu_id__in=gpu_ids)) & overlapping
    ).order_by("created_at", "id")


def lease_delivery(
    *, lease_id: int, start: datetime, end: datetime, now: datetime | None = None
) -> LeaseDelivery:
    """Leased and verified-delivered GPU-seconds of a lease inside [start, end).

    Seconds are whole: the millisecond totals are summed over the lease's GPUs, then floored.
    An empty intersection gives zeros (and `start == end`).
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput.one("start", "naive_datetime", "start and end must be timezone-aware (UTC)")
    if not start < end:
        raise InvalidInput.one("end", "not_after_start", "end must be after start (half-open window)")
    lease = Lease.objects.filter(pk=lease_id).first()
    if lease is None:
        raise NotFound(f"Lease {lease_id} not found.")
    now = now or timezone.now()
    lo, hi = max(start, lease.start), min(end, lease.end)
    if lo >= hi:
        return LeaseDelivery(
            lease.pk, lo, lo, 0, 0, 0, now >= lo + dt.timedelta(seconds=settings.METERING_GRACE_S)
        )
    per_gpu = lease_gpu_delivery(lease=lease, lo=lo, hi=hi)
    open_count = _anomalies_touching(lease, lo, hi).filter(status=AnomalyStatus.OPEN).count()
    return LeaseDelivery(
        lease_id=lease.pk,
        start=lo,
        end=hi,
        leased_gpu_seconds=sum(g.leased_ms for g in per_gpu) // 1000,
        delivered_gpu_seconds=sum(g.delivered_ms for g in per_gpu) // 1000,
        open_anomalies=open_count,
        complete=now >= hi + dt.timedelta(seconds=settings.METERING_GRACE_S),
    )


def anomaly_list(*, status: str | None = None, lease_id: int | None = None) -> QuerySet[Anomaly]:
    """Anomalies for staff, newest first, optionally by status and lease."""
    if status is not None and status not in AnomalyStatus.values:
        raise InvalidInput.one(
            "status", "invalid_choice", f"must be one of {', '.join(AnomalyStatus.values)}"
        )
    qs = Anomaly.objects.select_related("lease", "gpu", "host", "resolved_by")
    if status is not None:
        qs = qs.filter(status=status)
    if lease_id is not None:
        qs = qs.filter(lease_id=lease_id)
    return qs.order_by("-created_at", "-id")


def _iso(ms_value: int) -> str:
    return (EPOCH + dt.timedelta(milliseconds=ms_value)).isoformat().replace("+00:00", "Z")


def lease_usage(*, team: Team, lease_id: int, now: datetime | None = None) -> dict[str, Any]:
    """Per-GPU timeline, totals and anomalies of a lease, for its buyer and its GPUs' sellers only."""
    lease = Lease.objects.filter(pk=lease_id).first()
    if lease is None:
        raise NotFound(f"Lease {lease_id} not found.")
    sellers = set(
        LeaseGpu.objects.filter(lease=lease).values_list("gpu__host__cluster__team_id", flat=True).distinct()
    )
    if team.pk != lease.team_id and team.pk not in sellers:
        raise NotFound(f"Lease {lease_id} not found.")
    now = now or timezone.now()
    hi = min(lease.end, max(now, lease.start + dt.timedelta(milliseconds=1)))
    per_gpu = lease_gpu_delivery(lease=lease, lo=lease.start, hi=hi)
    uuids = dict(LeaseGpu.objects.filter(lease=lease).values_list("gpu_id", "gpu__uuid"))
    anomalies = _anomalies_touching(lease, lease.start, lease.end)
    return {
        "lease_id": lease.pk,
        "start": lease.start,
        "end": lease.end,
        "as_of": hi,
        "complete": now >= lease.end + dt.timedelta(seconds=settings.METERING_GRACE_S),
        "leased_gpu_seconds": sum(g.leased_ms for g in per_gpu) // 1000,
        "delivered_gpu_seconds": sum(g.delivered_ms for g in per_gpu) // 1000,
        "unhealthy_gpu_seconds": sum(g.unhealthy_ms for g in per_gpu) // 1000,
        "energy_mj": sum(g.energy_mj for g in per_gpu),
        "gpus": [
            {
                "uuid": uuids[g.gpu_id],
                "leased_seconds": g.leased_ms // 1000,
                "delivered_seconds": g.delivered_ms // 1000,
                "unhealthy_seconds": g.unhealthy_ms // 1000,
                "energy_mj": g.energy_mj,
                "reports": g.reports,
                "delivered": [{"start": _iso(a), "end": _iso(b)} for a, b in g.delivered],
                "unhealthy": [{"start": _iso(a), "end": _iso(b)} for a, b in g.unhealthy],
            }
            for g in per_gpu
        ],
        "anomalies": [
            {"id": a.pk, "kind": a.kind, "status": a.status, "message": a.message, "created_at": a.created_at}
            for a in anomalies
        ],
    }


@dataclass(frozen=True)
class AgentHealth:
    """What a seller sees of the metering agent on one host."""

    host_id: int
    enrolled: bool  # an active key exists
    revoked: bool  # no active key and the latest one was revoked
    agent_id: str
    agent_version: str
    enrolled_at: datetime | None
    last_report_at: datetime | None  # when the last envelope was received, accepted or not
    open_anomalies: int

    def state(self, *, now: datetime, stale_after: dt.timedelta = dt.timedelta(minutes=5)) -> str:
        """A badge word: reporting, stale, silent (enrolled, never reported), revoked or not_enrolled."""
        if not self.enrolled:
            return "revoked" if self.revoked else "not_enrolled"
        if self.last_report_at is None:
            return "silent"
        return "reporting" if now - self.last_report_at <= stale_after else "stale"


def host_agent_health(*, host_ids: list[int]) -> dict[int, AgentHealth]:
    """Agent health of many hosts in three queries, whatever their number (the caller applies the team)."""
    latest: dict[int, HostKey] = {}
    for row in HostKey.objects.filter(host_id__in=host_ids).order_by("host_id", "-enrolled_at", "-id"):
        latest.setdefault(row.host_id, row)  # an active key is the newest enrolment of its host
    last_seen = dict(
        Envelope.objects.filter(key__host_id__in=host_ids)
        .values("key__host_id")
        .annotate(last=Max("received_at"))
        .values_list("key__host_id", "last")
    )
    anomalies = dict(
        Anomaly.objects.filter(
            Q(host_id__in=host_ids) | Q(gpu__host_id__in=host_ids), status=AnomalyStatus.OPEN
        )
        .annotate(h=Coalesce("host_id", "gpu__host_id"))
        .values("h")
        .annotate(n=Count("id"))
        .values_list("h", "n")
    )
    out: dict[int, AgentHealth] = {}
    for host_id in host_ids:
        key = latest.get(host_id)
        active = key is not None and key.status == KeyStatus.ACTIVE
        out[host_id] = AgentHealth(
            host_id=host_id,
            enrolled=active,
            revoked=key is not None and key.status == KeyStatus.REVOKED,
            agent_id=key.agent_id if key else "",
            agent_version=key.agent_version if key else "",
            enrolled_at=key.enrolled_at if key else None,
            last_report_at=last_seen.get(host_id),
            open_anomalies=anomalies.get(host_id, 0),
        )
    return out
