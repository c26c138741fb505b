"""Every write of the round lifecycle: open, close (freeze), clear (claim, solve, write), sweep.

Each step is safe to run twice: closing and claiming are conditional UPDATEs that must change one
row, and everything clearing writes sits under unique keys in one transaction.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from auctions import engine
from marketplace import grid
from marketplace import services as market
from marketplace.db import prepared_cursor
from marketplace.errors import Conflict, NotFound
from marketplace.models import ApiKey, Bid, BidStatus, Gpu, GpuModel, Offer, Team, User
from marketplace.specs import BidSpec, OfferSpec
from marketplace.transactions import step

from . import merkle, selectors
from .models import (
    BidOutcome,
    Lease,
    LeaseGpu,
    LeaseSource,
    Notification,
    OfferFill,
    Outcome,
    PricePoint,
    Round,
    RoundStatus,
)
from .verify import result_hash

log = logging.getLogger(__name__)
ZERO_HASH = "0" * 64


class ClearingError(RuntimeError):
    """The clearing could not be written (e.g. the engine refused the snapshot)."""


def canonical(doc: object) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- opening and closing ----------------------------------------------------------------------


def _next_cutoff(now: dt.datetime) -> dt.datetime:
    """The first round-interval boundary (aligned to the epoch) strictly after `now`."""
    step = int(settings.ROUND_INTERVAL_SECONDS)
    seconds = int((now - grid.EPOCH).total_seconds())
    return grid.EPOCH + dt.timedelta(seconds=seconds - seconds % step + step)


def _new_round(*, number: int, now: dt.datetime) -> Round:
    cutoff = _next_cutoff(now)
    # Delivery starts at the first slot after the clearing can have finished.
    ready = cutoff + dt.timedelta(seconds=int(settings.SOLVER_TIME_LIMIT_SECONDS) + 60)
    slot_minutes = int(settings.SLOT_MINUTES)
    return Round.objects.create(
        number=number,
        status=RoundStatus.OPEN,
        opened_at=now,
        cutoff_at=cutoff,
        horizon_start=grid.slot_ceil(ready),
        slot_minutes=slot_minutes,
        slots=int(settings.MAX_HORIZON_DAYS) * 24 * 60 // slot_minutes,
    )


def round_open(*, now: dt.datetime | None = None) -> Round:
    """Open a round unless one is open; the database allows only one open round."""
    now = now or timezone.now()
    if existing := Round.objects.filter(status=RoundStatus.OPEN).first():
        return existing
    last = Round.objects.order_by("-number").values_list("number", flat=True).first() or 0
    try:
        with transaction.atomic():
            return _new_round(number=last + 1, now=now)
    except IntegrityError:
        # Another beat (or command) opened it first: theirs is the open round.
        return Round.objects.get(status=RoundStatus.OPEN)


def _lock_book() -> None:
    # SHARE mode waits for every transaction that is writing bids or offers to commit, and holds
    # new writes until this one commits: every bid committed before the close is in the snapshot,
    # every later one lands in the next round. SQLite serialises all writers anyway.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("LOCK TABLE marketplace_bid, marketplace_offer IN SHARE MODE")


@transaction.atomic
def round_close(*, round_id: int, now: dt.datetime | None = None) -> Round | None:
    """Close an open round: freeze its snapshot, open the next round, queue the clearing.

    Returns the closed round, or None when it was not open (closed by someone else).
    """
    now = now or timezone.now()
    _lock_book()
    if (
        Round.objects.filter(pk=round_id, status=RoundStatus.OPEN).update(
            status=RoundStatus.CLOSED, closed_at=now
        )
        != 1
    ):
        return None
    round_ = Round.objects.get(pk=round_id)
    document, bids = selectors.round_snapshot_build(round_=round_)
    text = canonical(document)
    round_.snapshot = text
    round_.snapshot_sha256 = sha256_text(text)
    round_.merkle_root = merkle.merkle_root([b.receipt for b in bids])
    round_.save(update_fields=["snapshot", "snapshot_sha256", "merkle_root"])
    _new_round(number=round_.number + 1, now=max(now, round_.cutoff_at))
    from .tasks import round_clear_task  # tasks import services; imported here to avoid a cycle

    transaction.on_commit(lambda: round_clear_task.delay(round_id))
    return round_


def round_close_due(*, now: dt.datetime | None = None) -> dict[str, int | None]:
    """Beat's every-minute tick: close the open round if its cutoff passed; open one if none."""
    now = now or timezone.now()
    closed = None
    open_round = Round.objects.filter(status=RoundStatus.OPEN).first()
    if open_round is None:
        open_round = round_open(now=now)
    if open_round.cutoff_at <= now and (done := round_close(round_id=open_round.pk, now=now)):
        closed = done.number
    current = Round.objects.filter(status=RoundStatus.OPEN).values_list("number", flat=True).first()
    return {"closed": closed, "open": current}


# --- entering the book -------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """A stored order and the round it will be cleared in."""

    order: Bid | Offer
    round_number: int | None


@functools.cache
def _open_round_sql() -> str:
    return (
        f"SELECT number FROM {connection.ops.quote_name(Round._meta.db_table)} WHERE status = %s"  # noqa: S608
        " ORDER BY number DESC LIMIT 1"
    )


@functools.cache
def _open_round_read() -> str:
    """The open round's number as a parameterless scalar subquery, for `bid_place_reading`."""
    status = str(RoundStatus.OPEN)
    assert status.isalpha()  # a fixed enum value, written into the SQL text
    return (
        f"SELECT number FROM {connection.ops.quote_name(Round._meta.db_table)}"  # noqa: S608
        f" WHERE status = '{status}' ORDER BY number DESC LIMIT 1"
    )


def _open_round_number() -> int | None:
    # Raw: every bid request asks, and the ORM's compile costs more than the statement.
    with prepared_cursor() as cursor:
        cursor.execute(_open_round_sql(), [str(RoundStatus.OPEN)])
        row = cursor.fetchone()
    return None if row is None else int(row[0])


@step
def bid_submit(
    *, team: Team, actor: User | None, spec: BidSpec, idempotency_key: str, api_key: ApiKey | None = None
) -> Placed:
    """Place a bid and say which round it is in: the round open when this transaction commits.

    The round is read by the bid's insert statement, after it holds the bid table's write lock: a
    round close (`_lock_book`, SHARE) either committed before that read or waits for this
    transaction, so the round seen is still open at commit.
    """
    bid, number = market.bid_place_reading(
        team=team,
        actor=actor,
        spec=spec,
        idempotency_key=idempotency_key,
        api_key=api_key,
        read=_open_round_read(),
    )
    return Placed(order=bid, round_number=None if number is None else int(number))


@dataclass(frozen=True)
class PlacedBatch:
    """Stored bids, in request order, and the round they will be cleared in."""

    bids: list[Bid]
    round_number: int | None


@step
def bid_submit_batch(
    *,
    team: Team,
    actor: User | None,
    specs: list[BidSpec],
    idempotency_key: str,
    api_key: ApiKey | None = None,
) -> PlacedBatch:
    """Place up to 1,000 bids, all or none, in the same round (read as `bid_submit` reads it)."""
    bids, number = market.bid_place_batch_reading(
        team=team,
        actor=actor,
        specs=specs,
        idempotency_key=idempotency_key,
        api_key=api_key,
        read=_open_round_read(),
    )
    return PlacedBatch(bids=bids, round_number=None if number is None else int(number))


@step
def bid_resubmit(
    *,
    team: Team,
    actor: User | None,
    bid_id: int,
    spec: BidSpec,
    idempotency_key: str,
    api_key: ApiKey | None = None,
) -> Placed:
    """Replace an open bid that no closed round is clearing, and say which round the new one is in."""
    _refuse_if_clearing(bid_id)
    bid = market.bid_replace(
        team=team, actor=actor, bid_id=bid_id, spec=spec, idempotency_key=idempotency_key, api_key=api_key
    )
    return Placed(order=bid, round_number=_open_round_number())


@transaction.atomic
def offer_submit(
    *, team: Team, actor: User | None, spec: OfferSpec, idempotency_key: str | None = None
) -> Placed:
    """Post an offer and say which round it first takes part in."""
    offer = market.offer_post(team=team, actor=actor, spec=spec, idempotency_key=idempotency_key)
    return Placed(order=offer, round_number=_open_round_number())


@transaction.atomic
def offer_withdraw(*, team: Team, actor: User | None, offer_id: int) -> Offer:
    """Cancel a live offer; what closed rounds already leased from it stays leased."""
    return market.offer_cancel(team=team, actor=actor, offer_id=offer_id)


# --- clearing ---------------------------------------------------------------------------------


def round_clear(*, round_id: int) -> str:
    """Clear a closed round exactly once: claim it, solve outside any transaction, write all.

    Returns "cleared", "failed", or "skipped" when another worker holds or finished it.
    """
    now = timezone.now()
    claimed = Round.objects.filter(pk=round_id, status=RoundStatus.CLOSED).update(
        status=RoundStatus.CLEARING, clearing_started_at=now, clearing_attempts=F("clearing_attempts") + 1
    )
    if claimed != 1:
        return "skipped"
    round_ = Round.objects.get(pk=round_id)
    attempt = round_.clearing_attempts
    document = json.loads(round_.snapshot)
    if settings.CLEARING_SCALE_OUT and len(parts := engine.split(document)) > 1:
        # Independent sub-markets are cleared as a Celery chord spread over the workers; the
        # merge writes the result. A part that dies leaves the round in `clearing` for the sweep.
        from .tasks import dispatch_parts

        dispatch_parts(round_id=round_id, attempt=attempt, parts=len(parts))
        return "dispatched"
    result = engine.clear(
        document,
        workers=int(settings.CLEARING_WORKERS),
        time_limit=_time_limit(),
        gap=float(settings.CLEARING_GAP),
    )
    return round_result_write(round_id=round_id, attempt=attempt, result=result)


def _time_limit() -> float:
    return float(settings.SOLVER_TIME_LIMIT_SECONDS)


def round_part_clear(*, round_id: int, attempt: int, index: int) -> dict[str, Any] | None:
    """Clear sub-market `index` of a round's snapshot; None if the attempt lost its claim."""
    round_ = Round.objects.get(pk=round_id)
    if round_.status != RoundStatus.CLEARING or round_.clearing_attempts != attempt:
        return None
    part = engine.split(json.loads(round_.snapshot))[index]
    return engine.clear(part, workers=1, time_limit=_time_limit(), gap=float(settings.CLEARING_GAP))


def round_parts_merge(*, round_id: int, attempt: int, parts: list[dict[str, Any] | None]) -> str:
    """Merge the parts' results (identical to clearing the whole snapshot) and write them."""
    if any(p is None for p in parts):
        return "skipped"
    round_ = Round.objects.get(pk=round_id)
    result = engine.merge(json.loads(round_.snapshot), [p for p in parts if p is not None])
    return round_result_write(round_id=round_id, attempt=attempt, result=result)


@transaction.atomic
def round_result_write(*, round_id: int, attempt: int, result: dict[str, Any]) -> str:
    """Write a clearing's result in one transaction, if this attempt still holds the claim."""
    round_ = Round.objects.select_for_update().get(pk=round_id)
    if round_.status != RoundStatus.CLEARING or round_.clearing_attempts != attempt:
        return "skipped"
    text = engine.dumps_result(result)
    if result.get("status") not in {"optimal", "time_limit"}:
        round_.status = RoundStatus.FAILED
        round_.result = text
        round_.result_sha256 = result_hash(result)
        round_.error = str(result.get("message", "the engine returned no clearing"))
        round_.save(update_fields=["status", "result", "result_sha256", "error"])
        log.error("round %s failed: %s", round_.number, round_.error)
        return "failed"
    _write_outcomes(round_, result)
    round_.result = text
    round_.result_sha256 = result_hash(result)
    round_.report = canonical(_report(round_, result))
    round_.report_sha256 = sha256_text(round_.report)
    round_.status = RoundStatus.CLEARED
    round_.cleared_at = timezone.now()
    round_.save(update_fields=["result", "result_sha256", "report", "report_sha256", "status", "cleared_at"])
    _notify_round_cleared(round_)
    return "cleared"


def _notify_round_cleared(round_: Round) -> None:
    """Tell every team with a bid or offer in the round that its report is out."""
    snapshot = json.loads(round_.snapshot)
    slugs = {b["team"] for b in snapshot["bids"]} | {o["team"] for o in snapshot["offers"]}
    report = json.loads(round_.report)
    payload = {
        "round": round_.number,
        "status": report["status"],
        "gpu_hours_traded": report["gpu_hours_traded"],
        "report_sha256": round_.report_sha256,
    }
    for team in Team.objects.filter(slug__in=slugs).order_by("pk"):
        _notify(team, round_, "round.cleared", f"round:{round_.number}:cleared:{team.slug}", payload)


def _split_revenue(total: int, weights: list[int]) -> list[int]:
    """Split integer cents by weights, largest remainder first (ties to the earlier): sums exactly."""
    whole = sum(weights)
    if whole == 0:
        return [0] * len(weights)
    shares = [total * w // whole for w in weights]
    rest = total - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in order[:rest]:
        shares[i] += 1
    return shares


def _write_outcomes(round_: Round, result: dict[str, Any]) -> None:
    slot = dt.timedelta(minutes=round_.slot_minutes)
    hs = round_.horizon_start
    awards = sorted(result["awards"], key=lambda a: (a["start_slot"], a["bid"]))
    bids = {
        b.pk: b
        for b in Bid.objects.filter(pk__in=[selectors.bid_id_of(a["bid"]) for a in awards]).select_related(
            "team"
        )
    }
    offers = {
        o.pk: o
        for o in Offer.objects.filter(
            pk__in={selectors.offer_id_of_piece(s["offer"]) for a in awards for s in a["sources"]}
        ).select_related("cluster", "gpu_model")
    }
    models = {m.name: m for m in GpuModel.objects.all()}
    # Revenue of each offer piece, split over the awards it served by GPU-slots.
    served: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for a in awards:
        for s in a["sources"]:
            served[s["offer"]].append((a["bid"], s["gpus"] * (a["end_slot"] - a["start_slot"])))
    piece_revenue = {o["offer"]: o["revenue_cents"] for o in result["offers"]}
    source_revenue: dict[tuple[str, str], int] = {}
    for piece, uses in served.items():
        for (bid_ref, _), cents in zip(
            uses, _split_revenue(piece_revenue.get(piece, 0), [w for _, w in uses]), strict=True
        ):
            source_revenue[(bid_ref, piece)] = cents

    for a in awards:
        bid = bids[selectors.bid_id_of(a["bid"])]
        start, end = hs + a["start_slot"] * slot, hs + a["end_slot"] * slot
        lease = Lease.objects.create(
            round=round_,
            bid=bid,
            team=bid.team,
            gpu_model=models[a["gpu_model"]],
            cluster_code=a["cluster"] or "",
            gpus=a["gpus"],
            start=start,
            end=end,
            payment_cents=a["payment_cents"],
            currency=bid.currency,
        )
        by_offer: dict[int, tuple[int, int]] = defaultdict(lambda: (0, 0))
        for s in a["sources"]:
            oid = selectors.offer_id_of_piece(s["offer"])
            gpus, cents = by_offer[oid]
            by_offer[oid] = (gpus + s["gpus"], cents + source_revenue[(a["bid"], s["offer"])])
        for oid, (gpus, cents) in sorted(by_offer.items()):
            source = LeaseSource.objects.create(
                lease=lease, offer=offers[oid], gpus=gpus, revenue_cents=cents
            )
            _assign_gpus(lease=lease, source=source, offer=offers[oid], gpus=gpus)
        Bid.objects.filter(pk=bid.pk).update(status=BidStatus.WON)
        BidOutcome.objects.create(round=round_, bid=bid, outcome=Outcome.WON, lease=lease)
        _notify(
            bid.team,
            round_,
            "bid.won",
            f"round:{round_.number}:bid:{bid.pk}",
            {"bid": bid.pk, "lease": lease.pk, "payment_cents": lease.payment_cents},
        )
    losers = {selectors.bid_id_of(x["bid"]): x for x in result["losers"]}
    for bid in Bid.objects.filter(pk__in=losers).select_related("team").order_by("pk"):
        loss = losers[bid.pk]
        detail = {k: v for k, v in loss.items() if k not in {"bid", "reason"}}
        BidOutcome.objects.create(
            round=round_, bid=bid, outcome=Outcome.LOST, reason=loss["reason"], detail=detail
        )
        _notify(
            bid.team,
            round_,
            "bid.lost",
            f"round:{round_.number}:bid:{bid.pk}",
            {"bid": bid.pk, "reason": loss["reason"], **detail},
        )
    fills: dict[int, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for o in result["offers"]:
        oid = selectors.offer_id_of_piece(o["offer"])
        hours, cents = fills[oid]
        fills[oid] = (hours + int(o["gpu_hours_sold"]), cents + o["revenue_cents"])
    OfferFill.objects.bulk_create(
        OfferFill(round=round_, offer_id=oid, gpu_hours_sold=h, revenue_cents=c)
        for oid, (h, c) in sorted(fills.items())
    )
    PricePoint.objects.bulk_create(
        PricePoint(
            round=round_,
            cluster_code=p["cluster"],
            gpu_model=p["gpu_model"],
            slot_start=hs + p["slot"] * slot,
            cents_per_gpu_hour=p["cents_per_gpu_hour"],
        )
        for p in result["prices"]
    )


def _assign_gpus(*, lease: Lease, source: LeaseSource, offer: Offer, gpus: int) -> None:
    """Give the lease `gpus` specific GPUs of the offer's cluster and model in every slot.

    Capacity is per slot, so free GPUs may be fragmented: GPU a free for the first hours, GPU b for
    the rest. Slot by slot, GPUs already serving the lease are kept and the rest chosen by the
    longest free run ahead; a GPU's consecutive slots become one LeaseGpu row.
    """
    slot = dt.timedelta(minutes=lease.round.slot_minutes)
    n = int((lease.end - lease.start) / slot)
    candidates = list(
        Gpu.objects.filter(host__cluster=offer.cluster, gpu_model=offer.gpu_model)
        .order_by("uuid")
        .values_list("pk", flat=True)
    )
    busy = {g: [False] * n for g in candidates}
    rows = LeaseGpu.objects.filter(gpu_id__in=candidates, start__lt=lease.end, end__gt=lease.start)
    for gpu_id, start, end in rows.values_list("gpu_id", "start", "end"):
        first = max(int((start - lease.start) / slot), 0)
        last = min(-int(-(end - lease.start) / slot), n)  # ceil: a partly busy slot is busy
        for k in range(first, last):
            busy[gpu_id][k] = True

    def run_from(g: int, k: int) -> int:
        length = 0
        while k + length < n and not busy[g][k + length]:
            length += 1
        return length

    chosen: list[list[int]] = []
    previous: list[int] = []
    for k in range(n):
        keep = [g for g in previous if not busy[g][k]]
        others = sorted(
            (g for g in candidates if not busy[g][k] and g not in keep), key=lambda g: -run_from(g, k)
        )
        picked = (keep + others)[:gpus]
        if len(picked) < gpus:
            raise ClearingError(
                f"offer {offer.pk} has only {len(picked)} free GPUs in slot {k} for lease of bid "
                f"{lease.bid_id} ({gpus} needed)"
            )
        chosen.append(picked)
        previous = picked
    segments: list[LeaseGpu] = []
    open_since: dict[int, int] = {}
    for k in range(n + 1):
        now_set = set(chosen[k]) if k < n else set()
        for g in [g for g in open_since if g not in now_set]:
            segments.append(
                LeaseGpu(
                    lease=lease,
                    source=source,
                    gpu_id=g,
                    start=lease.start + open_since.pop(g) * slot,
                    end=lease.start + k * slot,
                )
            )
        for g in now_set:
            open_since.setdefault(g, k)
    LeaseGpu.objects.bulk_create(segments)


def _notify(team: Team, round_: Round, event: str, key: str, payload: dict[str, Any]) -> None:
    """Store a notification and queue its webhooks, once per key (the cause), in this transaction."""
    _, created = Notification.objects.get_or_create(
        key=key, defaults={"team": team, "round": round_, "event": event, "payload": payload}
    )
    if created:
        market.webhook_event_emit(team=team, event=event, event_id=key, data=payload)


def _report(round_: Round, result: dict[str, Any]) -> dict[str, Any]:
    """The public clearing report: aggregates, hashes and the chain link; no bid is revealed."""
    previous = (
        Round.objects.filter(number__lt=round_.number, status=RoundStatus.CLEARED)
        .order_by("-number")
        .values_list("report_sha256", flat=True)
        .first()
    )
    snapshot = json.loads(round_.snapshot)
    slot_hours = round_.slot_minutes / 60
    gpu_hours = sum(a["gpus"] * (a["end_slot"] - a["start_slot"]) * slot_hours for a in result["awards"])
    bound = result.get("bound_cents") or 0
    welfare = result.get("welfare_cents") or 0
    return {
        "format": "gridx.report/v1",
        "round": round_.number,
        "cutoff_at": selectors.iso(round_.cutoff_at),
        "horizon_start": selectors.iso(round_.horizon_start),
        "status": result["status"],
        "counts": {
            "bids": len(snapshot["bids"]),
            "offers": len(snapshot["offers"]),
            "awards": len(result["awards"]),
            "losers": len(result["losers"]),
        },
        "gpu_hours_traded": round(gpu_hours, 6),
        "welfare_cents": welfare,
        "bound_cents": bound,
        "gap": round(1 - welfare / bound, 6) if bound else 0.0,
        "solver": {
            "name": result.get("stats", {}).get("solver", "HIGHS"),
            "time_limit_s": int(settings.SOLVER_TIME_LIMIT_SECONDS),
            "gap": float(settings.CLEARING_GAP),
        },
        "pricing": result.get("pricing", {}),
        "prices": result["prices"],
        "snapshot_sha256": round_.snapshot_sha256,
        "result_sha256": result_hash(result),
        "bids_merkle_root": round_.merkle_root,
        "previous_report_sha256": previous or ZERO_HASH,
    }


# --- recovery ---------------------------------------------------------------------------------


def round_clear_sweep(*, now: dt.datetime | None = None) -> list[int]:
    """Re-queue clearings whose worker died (stuck in `clearing`) or whose task was lost."""
    from .tasks import round_clear_task

    now = now or timezone.now()
    stale = now - dt.timedelta(seconds=int(settings.CLEARING_STALE_SECONDS))
    requeued: list[int] = []
    for round_id, attempt in Round.objects.filter(
        status=RoundStatus.CLEARING, clearing_started_at__lt=stale
    ).values_list("pk", "clearing_attempts"):
        # Conditional on the attempt: a worker that finishes meanwhile keeps its result.
        if Round.objects.filter(pk=round_id, status=RoundStatus.CLEARING, clearing_attempts=attempt).update(
            status=RoundStatus.CLOSED
        ):
            requeued.append(round_id)
    lost = Round.objects.filter(status=RoundStatus.CLOSED, closed_at__lt=now - dt.timedelta(seconds=60))
    requeued += [pk for pk in lost.values_list("pk", flat=True) if pk not in requeued]
    for round_id in requeued:
        round_clear_task.delay(round_id)
    return requeued


def _frozen_bid_ids() -> set[int]:
    """Bids in the snapshot of a closed round still being cleared (their terms are binding)."""
    frozen = Round.objects.filter(status__in=[RoundStatus.CLOSED, RoundStatus.CLEARING])
    ids: set[int] = set()
    for snapshot in frozen.values_list("snapshot", flat=True):
        ids.update(selectors.bid_id_of(b["id"]) for b in json.loads(snapshot)["bids"])
    return ids


def _refuse_if_clearing(bid_id: int) -> None:
    _lock_book()
    if bid_id in _frozen_bid_ids():
        raise Conflict(
            f"bid {bid_id} is being cleared in a closed round; wait for its outcome", code="clearing"
        )


def bid_withdraw(*, team: Team, actor: User | None, bid_id: int) -> Bid:
    """Cancel a bid unless a closed round is clearing it (its terms are then binding)."""
    with transaction.atomic():
        _refuse_if_clearing(bid_id)
        return market.bid_cancel(team=team, actor=actor, bid_id=bid_id)


@dataclass(frozen=True)
class Killed:
    key: ApiKey
    cancelled: list[int]
    held: list[int]  # open bids a closed round is clearing: they stand until its outcome


def api_key_kill(*, team: Team, actor: User | None, key_id: int) -> Killed:
    """The kill switch: revoke the key and cancel every open bid it placed that is not being cleared."""
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().filter(team=team, pk=key_id).first()
        if key is None:
            raise NotFound(f"API key {key_id} not found")
        market.require_role(team=team, actor=actor, roles=market.TRADING_ROLES, action="killing API keys")
        if key.revoked_at is None:
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
        _lock_book()
        frozen = _frozen_bid_ids()
        open_ids = list(
            Bid.objects.filter(api_key=key, status=BidStatus.OPEN).order_by("pk").values_list("pk", flat=True)
        )
        held = [pk for pk in open_ids if pk in frozen]
        cancel = [pk for pk in open_ids if pk not in frozen]
        Bid.objects.filter(pk__in=cancel, status=BidStatus.OPEN).update(
            status=BidStatus.CANCELLED, cancelled_at=timezone.now()
        )
        if key.killed_at is None:
            key.killed_at = timezone.now()
            key.save(update_fields=["killed_at"])
        key.refresh_from_db()
        return Killed(key=key, cancelled=cancel, held=held)


def lease_events_emit(*, now: dt.datetime | None = None) -> int:
    """Notify buyers of leases that started or ended since the last run; safe to run any time.

    Notifications and webhook deliveries are keyed by lease and event, so nothing is sent twice.
    """
    now = now or timezone.now()
    recent = now - dt.timedelta(days=1)
    sent = 0
    for event, field in (("lease.started", "start"), ("lease.ended", "end")):
        suffix = event.split(".")[1]
        leases = list(
            Lease.objects.filter(**{f"{field}__lte": now, f"{field}__gt": recent}).select_related(
                "team", "round"
            )
        )
        keys = {lease.pk: f"lease:{lease.pk}:{suffix}" for lease in leases}
        done = set(Notification.objects.filter(key__in=keys.values()).values_list("key", flat=True))
        for lease in leases:
            if keys[lease.pk] in done:
                continue
            with transaction.atomic():
                _notify(
                    lease.team,
                    lease.round,
                    event,
                    keys[lease.pk],
                    {"lease": lease.pk, "start": selectors.iso(lease.start), "end": selectors.iso(lease.end)},
                )
            sent += 1
    return sent
