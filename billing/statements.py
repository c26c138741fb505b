"""Statements: one per lease and period (a UTC day by default) from verified delivery; adjustments
for late evidence.

The pricing rule, in one place (docs/billing.md): the lease's price is the exact fraction
payment_cents / (GPUs x lease seconds). A day's charge is delivered GPU-seconds x that fraction,
rounded once to whole cents (half away from zero). Below the SLA the credit is the undelivered
GPU-seconds x the fraction x the multiple, rounded once and capped at the charge. The fee is the
charge's basis points, rounded once; the sellers get exactly charge - fee, split by their sources.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from auctions.models import Lease, LeaseSource
from metering.selectors import LeaseDelivery, lease_delivery

from .ledger import Leg, ledger_post, platform_account, team_account
from .models import AccountKind, Statement, StatementKind, StatementPayable, TransactionKind
from .money import basis_points, round_half_away, split_by_weights

DAY = dt.timedelta(days=1)


def period_length() -> dt.timedelta:
    """A statement period: BILLING_STATEMENT_SECONDS, one UTC day unless the demo shortens it."""
    return dt.timedelta(seconds=settings.BILLING_STATEMENT_SECONDS)


def period_floor(at: dt.datetime) -> dt.datetime:
    """The start of the statement period holding `at`; periods are aligned to UTC midnight."""
    midnight = dt.datetime.combine(at.astimezone(dt.UTC).date(), dt.time(), tzinfo=dt.UTC)
    step = settings.BILLING_STATEMENT_SECONDS
    return midnight + dt.timedelta(seconds=int((at - midnight).total_seconds()) // step * step)


def period_start_of(day: dt.date | dt.datetime) -> dt.datetime:
    """A period's start from a date (its midnight) or any instant inside the period."""
    if isinstance(day, dt.datetime):
        return period_floor(day)
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


@dataclass(frozen=True)
class Amounts:
    """A statement's money in cents: charge, credit, fee and each source's payable."""

    charge: int
    credit: int
    fee: int
    payables: dict[int, int]  # LeaseSource id -> cents

    def minus(self, other: Amounts) -> Amounts:
        keys = sorted(set(self.payables) | set(other.payables))
        return Amounts(
            self.charge - other.charge,
            self.credit - other.credit,
            self.fee - other.fee,
            {k: self.payables.get(k, 0) - other.payables.get(k, 0) for k in keys},
        )

    def is_zero(self) -> bool:
        return not (self.charge or self.credit or self.fee or any(self.payables.values()))


def lease_gpu_seconds(lease: Lease) -> int:
    """GPUs x whole seconds of the lease: the denominator of its price."""
    return lease.gpus * int((lease.end - lease.start).total_seconds())


def amounts_for(lease: Lease, sources: list[LeaseSource], delivery: LeaseDelivery) -> Amounts:
    """Apply the pricing rule (module docstring) to one day's delivery of one lease."""
    whole = lease_gpu_seconds(lease)
    charge = round_half_away(delivery.delivered_gpu_seconds * lease.payment_cents, whole)
    credit = 0
    leased, delivered = delivery.leased_gpu_seconds, delivery.delivered_gpu_seconds
    if leased and delivered * 10_000 < leased * settings.BILLING_SLA_BPS:
        credit = round_half_away(
            (leased - delivered) * lease.payment_cents * settings.BILLING_SLA_CREDIT_MULTIPLE_BPS,
            whole * 10_000,
        )
        # A day's credit never exceeds its charge: the buyer is never paid for a lease.
        credit = min(credit, charge)
    fee = basis_points(charge, settings.BILLING_FEE_BPS)
    weights = [s.revenue_cents for s in sources]
    if not any(weights):
        weights = [s.gpus for s in sources]
    shares = split_by_weights(charge - fee, weights)
    return Amounts(charge, credit, fee, {s.pk: c for s, c in zip(sources, shares, strict=True)})


def _stated(lease: Lease, period_start: dt.datetime) -> Amounts:
    """The sum of everything already stated for a lease and period."""
    qs = Statement.objects.filter(lease=lease, period_start=period_start)
    totals = qs.aggregate(c=Sum("charge_cents"), r=Sum("credit_cents"), f=Sum("fee_cents"))
    payables: dict[int, int] = {}
    for row in (
        StatementPayable.objects.filter(statement__in=qs).values("source_id").annotate(t=Sum("payable_cents"))
    ):
        payables[row["source_id"]] = row["t"]
    return Amounts(totals["c"] or 0, totals["r"] or 0, totals["f"] or 0, payables)


def _post(statement: Statement, amounts: Amounts, sources: dict[int, LeaseSource]) -> None:
    currency = statement.currency
    receivable = team_account(team=statement.team, kind=AccountKind.RECEIVABLE, currency=currency)
    legs = [
        Leg(receivable, amounts.charge - amounts.credit),
        Leg(platform_account(kind=AccountKind.FEES, currency=currency), -amounts.fee),
        Leg(platform_account(kind=AccountKind.CREDITS, currency=currency), amounts.credit),
    ]
    for source_id, cents in sorted(amounts.payables.items()):
        seller = sources[source_id].offer.cluster.team
        legs.append(Leg(team_account(team=seller, kind=AccountKind.PAYABLE, currency=currency), -cents))
    if any(leg.amount_cents for leg in legs):
        tx = ledger_post(
            key=f"stmt:{statement.pk}",
            kind=TransactionKind.STATEMENT,
            legs=legs,
            memo=f"lease {statement.lease_id} {_period_label(statement.period_start)} #{statement.seq}",
        )
        Statement.objects.filter(pk=statement.pk, transaction__isnull=True).update(transaction=tx)
        statement.transaction = tx


def _period_label(start: dt.datetime) -> str:
    """A day's date, or the start instant when periods are shorter than a day."""
    if period_length() >= DAY:
        return start.date().isoformat()
    return f"{start:%Y-%m-%d %H:%M}Z"


@transaction.atomic
def statement_build(
    *, lease_id: int, day: dt.date | dt.datetime, now: dt.datetime | None = None
) -> Statement | None:
    """State one lease's period once its grace has passed; later, state only the change (an adjustment).

    `day` names the period: a date (its midnight, the whole day by default) or an instant inside it.
    Returns the new statement, or None when the period is not due or nothing changed.
    """
    now = now or timezone.now()
    lo = period_start_of(day)
    hi = lo + period_length()
    if now < hi + dt.timedelta(seconds=settings.BILLING_GRACE_SECONDS):
        return None
    # One builder per lease at a time: the lock makes the (lease, day, seq) decision race-free.
    lease = Lease.objects.select_for_update().get(pk=lease_id)
    if lease.end <= lo or lease.start >= hi:
        return None
    sources = list(
        LeaseSource.objects.filter(lease=lease).select_related("offer__cluster__team").order_by("pk")
    )
    delivery = lease_delivery(lease_id=lease.pk, start=lo, end=hi, now=now)
    target = amounts_for(lease, sources, delivery)
    previous = Statement.objects.filter(lease=lease, period_start=lo)
    last_seq = previous.order_by("-seq").values_list("seq", flat=True).first()
    change = target.minus(_stated(lease, lo)) if last_seq is not None else target
    if last_seq is not None:
        last = previous.get(seq=last_seq)
        same_evidence = (last.delivered_gpu_seconds, last.leased_gpu_seconds) == (
            delivery.delivered_gpu_seconds,
            delivery.leased_gpu_seconds,
        )
        if change.is_zero() or same_evidence:
            return None
    seq = 0 if last_seq is None else last_seq + 1
    statement = Statement.objects.create(
        lease=lease,
        team_id=lease.team_id,
        day=lo.date(),
        period_start=lo,
        seq=seq,
        kind=StatementKind.REGULAR if seq == 0 else StatementKind.ADJUSTMENT,
        currency=lease.currency,
        window_start=delivery.start,
        window_end=delivery.end,
        leased_gpu_seconds=delivery.leased_gpu_seconds,
        delivered_gpu_seconds=delivery.delivered_gpu_seconds,
        open_anomalies=delivery.open_anomalies,
        delivery_complete=delivery.complete,
        lease_payment_cents=lease.payment_cents,
        lease_gpu_seconds=lease_gpu_seconds(lease),
        charge_cents=change.charge,
        credit_cents=change.credit,
        fee_cents=change.fee,
    )
    by_id = {s.pk: s for s in sources}
    StatementPayable.objects.bulk_create(
        StatementPayable(
            statement=statement, source=by_id[sid], seller=by_id[sid].offer.cluster.team, payable_cents=cents
        )
        for sid, cents in sorted(change.payables.items())
        if cents
    )
    _post(statement, change, by_id)
    return statement


def statements_build_due(*, now: dt.datetime | None = None) -> list[int]:
    """Build every due statement and adjustment in the look-back window; returns new statement ids."""
    now = now or timezone.now()
    step = period_length()
    # Periods ending at or before `hi` are due; `lo` is as far back as late evidence is looked for.
    hi = period_floor(now - dt.timedelta(seconds=settings.BILLING_GRACE_SECONDS))
    lo = hi - dt.timedelta(
        seconds=settings.BILLING_ADJUSTMENT_SECONDS or settings.BILLING_ADJUSTMENT_DAYS * 86400
    )
    made: list[int] = []
    leases = (
        Lease.objects.filter(Q(start__lt=hi) & Q(end__gt=lo)).order_by("pk").values_list("pk", "start", "end")
    )
    for lease_id, start, end in leases:
        period = max(lo, period_floor(start))
        while period < hi and period < end:
            if (statement := statement_build(lease_id=lease_id, day=period, now=now)) is not None:
                made.append(statement.pk)
            period += step
    return made
