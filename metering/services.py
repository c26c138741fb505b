"""Metering writes: enrolment, key management, report ingestion, delivery and anomalies.

Agent-facing refusals are `Refusal`s carrying the gridx.metering/v1 problem document (status,
code, field errors, `acked_seq`) of docs/metering-agent.md; seller- and staff-facing errors are the
usual marketplace.errors.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone
from psycopg.types.json import Jsonb

from auctions.models import Lease, LeaseGpu
from marketplace.errors import Conflict, InvalidInput, NotFound
from marketplace.models import Gpu, Host, Team, User

from . import delivery
from .agent.protocol import (
    CLOCK_SKEW_TOLERANCE_S,
    EnrollRequest,
    Problem,
    ProtocolError,
    SignatureError,
    parse_envelope,
    parse_signed_headers,
    verify_request,
)
from .agent.protocol import (
    Envelope as WireEnvelope,
)
from .agent.protocol import (
    FieldError as WireFieldError,
)
from .models import (
    Anomaly,
    AnomalyKind,
    AnomalyStatus,
    ChainGap,
    DeliveryResult,
    EnrolmentToken,
    Envelope,
    EnvelopeStatus,
    HostKey,
    IntervalReport,
    KeyStatus,
)

TOKEN_PREFIX = "gxe_"  # noqa: S105 - a marker that makes leaked tokens greppable, not a secret


class Refusal(Exception):
    """An agent request refused per the protocol; `problem` is the answer's body."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.describe())
        self.problem = problem


def _refusal(
    status: int,
    code: str,
    title: str,
    *,
    detail: str = "",
    errors: list[tuple[str, str, str]] | None = None,
    acked: int | None = None,
) -> Refusal:
    return Refusal(
        Problem(
            status=status,
            code=code,
            title=title,
            detail=detail,
            errors=tuple(WireFieldError(*e) for e in errors or []),
            acked_seq=acked,
        )
    )


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------------
# Enrolment and keys


@dataclass(frozen=True)
class IssuedToken:
    """An enrolment token as issued: the secret is shown once and only its hash is stored."""

    token: str
    token_id: int
    host_id: int
    expires_at: dt.datetime


def _seller_host(*, team: Team, host_id: int) -> Host:
    host = Host.objects.select_related("cluster").filter(pk=host_id, cluster__team=team).first()
    if host is None:
        raise NotFound(f"Host {host_id} not found.")
    return host


@transaction.atomic
def enrolment_token_create(
    *, team: Team, actor: User | None, host_id: int, ttl_s: int | None = None, now: dt.datetime | None = None
) -> IssuedToken:
    """Issue a single-use token that lets one agent enrol this seller host (returned once)."""
    host = _seller_host(team=team, host_id=host_id)
    ttl = settings.METERING_TOKEN_TTL_S if ttl_s is None else ttl_s
    if not 0 < ttl <= 30 * 86400:
        raise InvalidInput.one("ttl_s", "out_of_range", "must be between 1 second and 30 days")
    if not host.gpus.exists():
        raise InvalidInput.one(
            "host_id", "no_gpus", "the host has no declared GPUs: register its GPUs before enrolling an agent"
        )
    now = now or timezone.now()
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = EnrolmentToken.objects.create(
        team=team,
        host=host,
        token_sha256=token_hash(token),
        created_by=actor,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=ttl),
    )
    return IssuedToken(token=token, token_id=row.pk, host_id=host.pk, expires_at=row.expires_at)


def host_enroll(*, request: EnrollRequest, now: dt.datetime | None = None) -> HostKey:
    """Register an agent's key for the token's host if its GPUs match the declared inventory.

    Raises Refusal (token_invalid 401, token_used/token_expired 410, gpu_mismatch 422). A refused
    enrolment leaves the token usable. Enrolling again replaces (retires) the host's active key.
    """
    now = now or timezone.now()
    with transaction.atomic():
        token = (
            EnrolmentToken.objects.select_for_update()
            .select_related("host")
            .filter(token_sha256=token_hash(request.token))
            .first()
        )
        if token is None:
            raise _refusal(401, "token_invalid", "Unknown enrolment token")
        if token.used_at is not None:
            raise _refusal(410, "token_used", "This enrolment token was already used")
        if now >= token.expires_at:
            raise _refusal(410, "token_expired", "This enrolment token has expired")
        host = token.host
        declared = set(Gpu.objects.filter(host=host).values_list("uuid", flat=True))
        elsewhere = dict(
            Gpu.objects.filter(uuid__in=[g.uuid for g in request.gpus])
            .exclude(host=host)
            .values_list("uuid", "host__hostname")
        )
        errors: list[tuple[str, str, str]] = []
        seen: set[str] = set()
        for i, gpu in enumerate(request.gpus):
            if gpu.uuid in seen:
                errors.append((f"gpus[{i}].uuid", "duplicate", f"{gpu.uuid} is listed twice"))
            elif gpu.uuid in elsewhere:
                errors.append(
                    (
                        f"gpus[{i}].uuid",
                        "gpu_taken",
                        f"{gpu.uuid} is declared on another host ({elsewhere[gpu.uuid]})",
                    )
                )
            elif gpu.uuid not in declared:
                errors.append(
                    (
                        f"gpus[{i}].uuid",
                        "not_declared",
                        f"{gpu.uuid} is not in the seller's declared inventory",
                    )
                )
            seen.add(gpu.uuid)
        for uuid in sorted(declared - seen):
            errors.append(("gpus", "missing", f"declared GPU {uuid} was not found on this host"))
        if errors:
            raise _refusal(
                422,
                "gpu_mismatch",
                "The GPUs found do not match the declared inventory",
                detail=f"host {host.hostname}",
                errors=errors,
            )
        if HostKey.objects.filter(public_key=request.public_key).exists():
            raise _refusal(
                400,
                "malformed",
                "Malformed enrolment",
                errors=[("public_key", "key_reused", "this key is already enrolled: make a new key")],
            )
        EnrolmentToken.objects.filter(pk=token.pk, used_at__isnull=True).update(used_at=now)
        HostKey.objects.filter(host=host, status=KeyStatus.ACTIVE).update(
            status=KeyStatus.RETIRED, ended_at=now
        )
        return HostKey.objects.create(
            host=host,
            agent_id="h_" + secrets.token_hex(10),
            public_key=request.public_key,
            hostname=request.hostname[:253],
            agent_version=request.agent_version[:64],
            inventory=[g.to_json() for g in request.gpus],
            token=token,
            enrolled_at=now,
        )


@transaction.atomic
def key_rotate(
    *, team: Team, actor: User | None, host_id: int, ttl_s: int | None = None, now: dt.datetime | None = None
) -> IssuedToken:
    """Start a key rotation: a fresh enrolment token. The current key keeps working until the agent
    enrols again with it (`gridx-agent enroll --force`), which retires the old key."""
    return enrolment_token_create(team=team, actor=actor, host_id=host_id, ttl_s=ttl_s, now=now)


@transaction.atomic
def host_revoke(*, team: Team, actor: User | None, host_id: int, now: dt.datetime | None = None) -> int:
    """Revoke every live key and unused token of a host (a stolen key, a decommissioned machine).

    Returns how many keys were revoked. Reports already stored stay; new ones are refused with
    `key_revoked`. Enrol again with a new token to resume metering.
    """
    host = _seller_host(team=team, host_id=host_id)
    now = now or timezone.now()
    EnrolmentToken.objects.filter(host=host, used_at__isnull=True, expires_at__gt=now).update(expires_at=now)
    return (
        HostKey.objects.filter(host=host)
        .exclude(status=KeyStatus.REVOKED)
        .update(status=KeyStatus.REVOKED, ended_at=now, ended_by=actor)
    )


# ---------------------------------------------------------------------------------------------------
# Ingestion


@dataclass(frozen=True)
class Ingested:
    """The answer to an accepted or duplicate envelope."""

    acked_seq: int
    status: str  # "accepted" | "duplicate"
    reports: int


def report_ingest(*, headers: Mapping[str, str], body: bytes, now: float | None = None) -> Ingested:
    """Verify, dedupe, chain-check and store one signed envelope (docs/metering-agent.md §5).

    Raises Refusal with the protocol's status and code. What a refusal consumes (the seq and hash)
    and the anomaly a broken chain raises are committed even though the request is refused.
    """
    now_s = time.time() if now is None else now
    try:
        signed = parse_signed_headers(headers)
    except SignatureError as exc:
        raise _refusal(400, exc.code, "Missing or malformed signature headers", detail=str(exc)) from None
    key = HostKey.objects.filter(agent_id=signed.host_id).first()
    if key is None:
        raise _refusal(401, "unknown_host", "Unknown host", detail=signed.host_id)
    if key.status != KeyStatus.ACTIVE:
        raise _refusal(403, "key_revoked", "This host's key was revoked", detail=f"key is {key.status}")
    try:
        verify_request(key.public_key, signed, body, now=now_s)
    except SignatureError as exc:
        raise _refusal(401, exc.code, "Signature refused", detail=exc.message) from None
    received = dt.datetime.fromtimestamp(now_s, dt.UTC)
    try:
        env = parse_envelope(body)
    except ProtocolError as exc:
        seq = _seq_of(body)
        acked = _consume_unparsed(key, seq, exc, received) if seq is not None else key.acked_seq
        raise _refusal(
            400, "malformed", "Malformed envelope", errors=[(exc.field, exc.code, exc.message)], acked=acked
        ) from None
    if env.host_id != signed.host_id:
        raise _refusal(400, "host_mismatch", "Body host_id differs from the Gridx-Host header")
    outcome = _store(key, env, received)
    if isinstance(outcome, Refusal):
        raise outcome
    return outcome


def _seq_of(body: bytes) -> int | None:
    try:
        seq = json.loads(body)["seq"]
    except (ValueError, KeyError, TypeError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1 else None


@transaction.atomic
def _consume_unparsed(key: HostKey, seq: int, exc: ProtocolError, received: dt.datetime) -> int:
    locked = HostKey.objects.select_for_update().get(pk=key.pk)
    if not Envelope.objects.filter(key=locked, seq=seq).exists():
        Envelope.objects.create(
            key=locked,
            seq=seq,
            status=EnvelopeStatus.REFUSED,
            refusal_code="malformed",
            refusal_detail=f"{exc.field}: {exc.message}"[:2000],
            received_at=received,
        )
    return _advance(locked)


def _advance(key: HostKey) -> int:
    """Move the key's acked_seq over every contiguous stored seq; the key row is locked."""
    seqs = (
        Envelope.objects.filter(key=key, seq__gt=key.acked_seq).order_by("seq").values_list("seq", flat=True)
    )
    acked = key.acked_seq
    for seq in seqs:
        if seq != acked + 1:
            break
        acked = seq
    if acked != key.acked_seq:
        HostKey.objects.filter(pk=key.pk).update(acked_seq=acked)
        key.acked_seq = acked
    return acked


@transaction.atomic
def _store(key_row: HostKey, env: WireEnvelope, received: dt.datetime) -> Ingested | Refusal:
    # The key row lock serialises one host's envelopes: the chain and acked_seq need one order.
    key = HostKey.objects.select_for_update().get(pk=key_row.pk)
    if key.status != KeyStatus.ACTIVE:
        return _refusal(403, "key_revoked", "This host's key was revoked", detail=f"key is {key.status}")
    near = {e.seq: e for e in Envelope.objects.filter(key=key, seq__in=[env.seq - 1, env.seq, env.seq + 1])}
    same = near.get(env.seq)
    if same is not None:
        if same.sha256 == env.hash:
            return Ingested(acked_seq=key.acked_seq, status="duplicate", reports=0)
        return _refusal(
            409, "seq_conflict", "Another envelope holds this sequence number", acked=key.acked_seq
        )
    prev, nxt = near.get(env.seq - 1), near.get(env.seq + 1)
    broken = ""
    if prev is not None and prev.sha256 and prev.sha256 != env.prev_hash:
        broken = "prev_hash does not match envelope seq-1"
    elif nxt is not None and nxt.prev_hash and nxt.prev_hash != env.hash:
        broken = "envelope seq+1 does not chain to this one"
    if broken:
        _anomaly_raise(
            key=f"chain_broken:{key.pk}:{env.seq}:{env.hash}",
            kind=AnomalyKind.CHAIN_BROKEN,
            host_id=key.host_id,
            message=f"Host {key.hostname or key.host_id} ({key.agent_id}) sent seq {env.seq}: {broken}.",
            detail={"agent_id": key.agent_id, "seq": env.seq, "sha256": env.hash, "prev_hash": env.prev_hash},
            now=received,
        )
        return _refusal(409, "chain_broken", "The hash chain is broken", detail=broken, acked=key.acked_seq)
    if env.seq > 1 and prev is None:
        below = Envelope.objects.filter(key=key, seq__lt=env.seq).aggregate(m=Max("seq"))["m"] or 0
        ChainGap.objects.get_or_create(
            key=key, last_seq=env.seq - 1, defaults={"first_seq": below + 1, "detected_at": received}
        )
    uuids = {r.gpu_uuid for r in env.reports}
    gpus = {
        uuid: (pk, host_id)
        for pk, uuid, host_id in Gpu.objects.filter(uuid__in=uuids).values_list("pk", "uuid", "host_id")
    }
    horizon = received + dt.timedelta(seconds=CLOCK_SKEW_TOLERANCE_S)
    errors: list[tuple[str, str, str]] = []
    for i, r in enumerate(env.reports):
        found = gpus.get(r.gpu_uuid)
        if found is None:
            errors.append((f"reports[{i}].gpu_uuid", "unknown_gpu", f"{r.gpu_uuid} is not enrolled"))
        elif found[1] != key.host_id:
            errors.append((f"reports[{i}].gpu_uuid", "foreign_gpu", f"{r.gpu_uuid} belongs to another host"))
            _anomaly_raise(
                key=f"duplicate_uuid:{found[0]}:{key.host_id}",
                kind=AnomalyKind.DUPLICATE_UUID,
                gpu_id=found[0],
                host_id=key.host_id,
                start=r.start,
                end=r.end,
                message=(
                    f"GPU {r.gpu_uuid} (declared on host {found[1]}) was also reported by host "
                    f"{key.hostname or key.host_id} ({key.agent_id}); those reports were refused."
                ),
                detail={"uuid": r.gpu_uuid, "declared_host": found[1], "reporting_agent": key.agent_id},
                now=received,
            )
        elif r.end > horizon:
            errors.append((f"reports[{i}].end", "interval_in_future", "the interval ends in the future"))
    if errors:
        Envelope.objects.create(
            key=key,
            seq=env.seq,
            sha256=env.hash,
            prev_hash=env.prev_hash,
            status=EnvelopeStatus.REFUSED,
            refusal_code=errors[0][1],
            refusal_detail="; ".join(f"{f}: {m}" for f, _, m in errors)[:2000],
            agent_version=env.agent_version,
            created_at=env.created_at,
            received_at=received,
            reports_count=len(env.reports),
        )
        acked = _advance(key)
        return _refusal(
            422, errors[0][1], "Reports refused", detail=f"seq {env.seq}", errors=errors, acked=acked
        )
    row = Envelope.objects.create(
        key=key,
        seq=env.seq,
        sha256=env.hash,
        prev_hash=env.prev_hash,
        status=EnvelopeStatus.ACCEPTED,
        agent_version=env.agent_version,
        created_at=env.created_at,
        received_at=received,
        reports_count=len(env.reports),
    )
    _reports_insert(row.pk, env, {u: g[0] for u, g in gpus.items()})
    return Ingested(acked_seq=_advance(key), status="accepted", reports=len(env.reports))


_REPORT_COLUMNS = (
    "envelope_id",
    "position",
    "gpu_id",
    "start",
    "end",
    "monotonic_ms",
    "clock_step_ms",
    "present",
    "healthy",
    "util_mean_pct",
    "util_max_pct",
    "mem_used_max_bytes",
    "energy_mj",
    "power_mean_mw",
    "xid_errors",
    "ecc_uncorrected_delta",
    "processes_max",
    "samples",
    "energy_resets",
)


def _copy_types() -> list[str]:
    """PostgreSQL type names of _REPORT_COLUMNS, for binary COPY (which needs them exactly)."""
    by_column = {f.column: f for f in IntervalReport._meta.concrete_fields}
    return [str(by_column[c].db_type(connection)) for c in _REPORT_COLUMNS]


# Most reports have no XID: one shared value whose JSON is known, so COPY does not encode it each row.
_EMPTY_XIDS = Jsonb([], dumps=lambda _obj: "[]")


def _reports_insert(envelope_id: int, env: WireEnvelope, gpu_ids: dict[str, int]) -> None:
    """Insert an envelope's reports in one statement: COPY on PostgreSQL, bulk_create elsewhere."""
    rows = [
        (
            envelope_id,
            i,
            gpu_ids[r.gpu_uuid],
            r.start,
            r.end,
            round(r.monotonic_s * 1000),
            round(r.clock_step_s * 1000),
            r.present,
            r.healthy,
            r.util_mean_pct,
            r.util_max_pct,
            r.mem_used_max_bytes,
            r.energy_mj,
            r.power_mean_mw,
            Jsonb(list(r.xid_errors)) if r.xid_errors else _EMPTY_XIDS,
            r.ecc_uncorrected_delta,
            r.processes_max,
            r.samples,
            r.energy_resets,
        )
        for i, r in enumerate(env.reports)
    ]
    if connection.vendor == "postgresql":
        columns = ", ".join(f'"{c}"' for c in _REPORT_COLUMNS)
        table = IntervalReport._meta.db_table
        with connection.cursor() as cursor:
            raw = cursor.cursor  # the psycopg cursor: Django's wrapper has no COPY
            # Binary COPY: psycopg's C dumpers write datetimes and numbers without formatting them
            # as text, and PostgreSQL reads them without parsing (about 2 us less a row).
            with raw.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:  # noqa: S608
                copy.set_types(_copy_types())
                for values in rows:
                    copy.write_row(values)
        return
    objs = []
    for values in rows:
        fields: dict[str, object] = dict(zip(_REPORT_COLUMNS, values, strict=True))
        xids = fields["xid_errors"]
        fields["xid_errors"] = list(xids.obj) if isinstance(xids, Jsonb) else []
        objs.append(IntervalReport(**fields))
    IntervalReport.objects.bulk_create(objs)


def report_ingest_naive(*, envelope_id: int, env: WireEnvelope) -> None:
    """The baseline the benchmark compares with: one ORM INSERT per report."""
    gpu_ids = dict(Gpu.objects.filter(uuid__in={r.gpu_uuid for r in env.reports}).values_list("uuid", "pk"))
    for i, r in enumerate(env.reports):
        IntervalReport.objects.create(
            envelope_id=envelope_id,
            position=i,
            gpu_id=gpu_ids[r.gpu_uuid],
            start=r.start,
            end=r.end,
            monotonic_ms=round(r.monotonic_s * 1000),
            clock_step_ms=round(r.clock_step_s * 1000),
            present=r.present,
            healthy=r.healthy,
            util_mean_pct=r.util_mean_pct,
            util_max_pct=r.util_max_pct,
            mem_used_max_bytes=r.mem_used_max_bytes,
            energy_mj=r.energy_mj,
            power_mean_mw=r.power_mean_mw,
            xid_errors=list(r.xid_errors),
            ecc_uncorrected_delta=r.ecc_uncorrected_delta,
            processes_max=r.processes_max,
            samples=r.samples,
            energy_resets=r.energy_resets,
        )


# ---------------------------------------------------------------------------------------------------
# Anomalies


def _anomaly_raise(
    *,
    key: str,
    kind: str,
    message: str,
    now: dt.datetime,
    lease_id: int | None = None,
    gpu_id: int | None = None,
    host_id: int | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    detail: dict[str, object] | None = None,
) -> Anomaly:
    """Record an anomaly once per key (raising it again changes nothing)."""
    anomaly, _ = Anomaly.objects.get_or_create(
        key=key[:200],
        defaults={
            "kind": kind,
            "message": message,
            "lease_id": lease_id,
            "gpu_id": gpu_id,
            "host_id": host_id,
            "start": start,
            "end": end,
            "detail": detail or {},
            "created_at": now,
        },
    )
    return anomaly


RESOLUTIONS = (AnomalyStatus.ACCEPTED, AnomalyStatus.CREDITED, AnomalyStatus.DISPUTED)


@transaction.atomic
def anomaly_resolve(*, anomaly_id: int, actor: User, resolution: str, note: str) -> Anomaly:
    """Staff decide an open anomaly: accepted (bill as computed), credited, or disputed."""
    if not actor.is_staff:
        raise NotFound(f"Anomaly {anomaly_id} not found.")
    if resolution not in RESOLUTIONS:
        raise InvalidInput.one("resolution", "invalid_choice", "must be one of accepted, credited, disputed")
    if not note.strip():
        raise InvalidInput.one("note", "required", "say why: the note is kept with the decision")
    anomaly = Anomaly.objects.filter(pk=anomaly_id).first()
    if anomaly is None:
        raise NotFound(f"Anomaly {anomaly_id} not found.")
    now = timezone.now()
    changed = Anomaly.objects.filter(pk=anomaly_id, status=AnomalyStatus.OPEN).update(
        status=resolution, resolved_at=now, resolved_by=actor, resolution_note=note.strip()
    )
    if changed != 1:
        raise Conflict(f"Anomaly {anomaly_id} was already resolved ({anomaly.status}).")
    anomaly.refresh_from_db()
    return anomaly


# ---------------------------------------------------------------------------------------------------
# Delivery


def ms(moment: dt.datetime) -> int:
    """Unix milliseconds of an aware datetime (exact: protocol times have millisecond precision)."""
    return (moment - EPOCH) // dt.timedelta(milliseconds=1)


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def report_rows(
    *, gpu_ids: list[int], lo: dt.datetime, hi: dt.datetime
) -> dict[int, list[delivery.ReportRow]]:
    """The reports of these GPUs that can touch [lo, hi) once clock steps are undone.

    A report's corrected place differs from its wall place by its chain's steps, so the query
    widens the window by the largest step of any chain that reported these GPUs (usually 0).
    """
    steps = IntervalReport.objects.filter(gpu_id__in=gpu_ids).exclude(clock_step_ms=0)
    widen = 0
    if steps.exists():
        chains = steps.values_list("envelope__key_id", flat=True).distinct()
        per_chain: dict[int, int] = defaultdict(int)
        for chain, step in (
            IntervalReport.objects.filter(gpu_id__in=gpu_ids, envelope__key_id__in=list(chains))
            .exclude(clock_step_ms=0)
            .values_list("envelope__key_id", "clock_step_ms")
        ):
            per_chain[chain] += abs(step)
        widen = max(per_chain.values(), default=0)
    margin = dt.timedelta(milliseconds=widen + 3_600_000)
    qs = IntervalReport.objects.filter(
        gpu_id__in=gpu_ids,
        envelope__status=EnvelopeStatus.ACCEPTED,
        start__lt=hi + margin,
        end__gt=lo - margin,
    ).values_list(
        "gpu_id",
        "envelope__key_id",
        "envelope__seq",
        "position",
        "start",
        "monotonic_ms",
        "clock_step_ms",
        "present",
        "healthy",
        "energy_mj",
        "power_mean_mw",
        "energy_resets",
    )
    out: dict[int, list[delivery.ReportRow]] = defaultdict(list)
    for gpu, chain, seq, pos, start, mono, step, present, healthy, energy, power, resets in qs.iterator():
        out[gpu].append(
            delivery.ReportRow(
                chain, seq, pos, ms(start), mono, step, present, healthy, energy, power, resets
            )
        )
    return out


@dataclass(frozen=True)
class GpuDelivery:
    """Delivery of one lease GPU over one window (ms), with its corrected timeline."""

    gpu_id: int
    leased_ms: int
    delivered_ms: int
    unhealthy_ms: int
    energy_mj: int
    reports: int
    last_report_end_ms: int | None
    energy_flags: int
    delivered: list[delivery.Interval]
    unhealthy: list[delivery.Interval]


def lease_gpu_delivery(*, lease: Lease, lo: dt.datetime, hi: dt.datetime) -> list[GpuDelivery]:
    """Per-GPU delivery of a lease inside [lo, hi) (already clipped to the lease), from the reports."""
    lease_gpus = list(
        LeaseGpu.objects.filter(lease=lease).order_by("gpu_id").values_list("gpu_id", "start", "end")
    )
    rows = report_rows(gpu_ids=[g for g, _, _ in lease_gpus], lo=lo, hi=hi)
    out = []
    for gpu_id, g_start, g_end in lease_gpus:
        a, b = ms(max(lo, g_start)), ms(min(hi, g_end))
        if a >= b:
            out.append(GpuDelivery(gpu_id, 0, 0, 0, 0, 0, None, 0, [], []))
            continue
        line = delivery.timeline(rows.get(gpu_id, []))
        placed = [s for s in delivery.spans(rows.get(gpu_id, [])) if s.start_ms < b and s.end_ms > a]
        energy = 0
        flags = 0
        for s in placed:
            inside = min(s.end_ms, b) - max(s.start_ms, a)
            plausible = delivery.plausible_energy_mj(s.row, max_power_w=settings.METERING_MAX_GPU_POWER_W)
            energy += plausible * inside // (s.end_ms - s.start_ms)
            flags += delivery.energy_mismatch(
                s.row,
                tolerance_pct=settings.METERING_ENERGY_TOLERANCE_PCT,
                slack_j=settings.METERING_ENERGY_SLACK_J,
                max_power_w=settings.METERING_MAX_GPU_POWER_W,
            )
        out.append(
            GpuDelivery(
                gpu_id=gpu_id,
                leased_ms=b - a,
                delivered_ms=line.delivered_ms(a, b),
                unhealthy_ms=line.unhealthy_ms(a, b),
                energy_mj=energy,
                reports=len(placed),
                last_report_end_ms=max((s.end_ms for s in placed), default=None),
                energy_flags=flags,
                delivered=delivery.clip(line.delivered, a, b),
                unhealthy=delivery.clip(line.unhealthy, a, b),
            )
        )
    return out


def _from_ms(value: int) -> dt.datetime:
    return EPOCH + dt.timedelta(milliseconds=value)


def delivery_compute(*, lease_id: int, now: dt.datetime | None = None) -> list[DeliveryResult]:
    """(Re)compute a lease's per-GPU delivery results and raise its anomalies; safe to repeat."""
    now = now or timezone.now()
    lease = Lease.objects.filter(pk=lease_id).first()
    if lease is None:
        raise NotFound(f"Lease {lease_id} not found.")
    grace = dt.timedelta(seconds=settings.METERING_GRACE_S)
    stopped_after = settings.METERING_STOPPED_AFTER_S * 1000
    per_gpu = lease_gpu_delivery(lease=lease, lo=lease.start, hi=lease.end)
    results = []
    with transaction.atomic():
        for d in per_gpu:
            g_end = (
                LeaseGpu.objects.filter(lease=lease, gpu_id=d.gpu_id).values_list("end", flat=True).first()
            )
            complete = g_end is not None and now >= g_end + grace
            result, _ = DeliveryResult.objects.update_or_create(
                lease=lease,
                gpu_id=d.gpu_id,
                defaults={
                    "leased_ms": d.leased_ms,
                    "delivered_ms": d.delivered_ms,
                    "unhealthy_ms": d.unhealthy_ms,
                    "reports": d.reports,
                    "energy_mj": d.energy_mj,
                    "last_report_end": None
                    if d.last_report_end_ms is None
                    else _from_ms(d.last_report_end_ms),
                    "complete": complete,
                    "computed_at": now,
                },
            )
            results.append(result)
            if d.energy_flags:
                _anomaly_raise(
                    key=f"energy_mismatch:{lease.pk}:{d.gpu_id}",
                    kind=AnomalyKind.ENERGY_MISMATCH,
                    lease_id=lease.pk,
                    gpu_id=d.gpu_id,
                    start=lease.start,
                    end=lease.end,
                    message=(
                        f"{d.energy_flags} interval(s) of GPU {d.gpu_id} in lease {lease.pk} "
                        "report energy far from mean power x time."
                    ),
                    detail={"intervals": d.energy_flags},
                    now=now,
                )
            # Reports stopped: nothing heard for a long stretch up to the lease's end (or up to
            # what should have arrived by now, while it runs).
            horizon = ms(min(now - grace, g_end or lease.end))
            lease_start = ms(lease.start)
            heard_until = d.last_report_end_ms if d.last_report_end_ms is not None else lease_start
            if horizon - max(heard_until, lease_start) > stopped_after:
                _anomaly_raise(
                    key=f"reports_stopped:{lease.pk}:{d.gpu_id}",
                    kind=AnomalyKind.REPORTS_STOPPED,
                    lease_id=lease.pk,
                    gpu_id=d.gpu_id,
                    start=_from_ms(max(heard_until, lease_start)),
                    end=lease.end,
                    message=(
                        f"GPU {d.gpu_id} of lease {lease.pk}: no report since "
                        f"{_from_ms(heard_until):%Y-%m-%d %H:%M:%S} UTC."
                    ),
                    detail={
                        "last_report_end": None
                        if d.last_report_end_ms is None
                        else _from_ms(heard_until).isoformat()
                    },
                    now=now,
                )
    return results


def deliveries_recompute(*, now: dt.datetime | None = None) -> int:
    """Recompute every lease that ran recently enough to receive reports; returns how many."""
    now = now or timezone.now()
    since = now - dt.timedelta(seconds=settings.METERING_RECOMPUTE_LOOKBACK_S)
    lease_ids = list(
        Lease.objects.filter(start__lt=now, end__gt=since).order_by("id").values_list("id", flat=True)
    )
    for lease_id in lease_ids:
        delivery_compute(lease_id=lease_id, now=now)
    return len(lease_ids)
