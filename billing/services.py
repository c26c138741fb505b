"""Billing writes around Stripe: customers, invoices, payouts, webhook events, standing, adjustments.

Each flow is resumable: a row's status is its recovery point, every Stripe call is its own phase
with an idempotency key derived from the row, and each phase is recorded with a conditional update.
Stripe is never called inside a database transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from auctions.models import LeaseSource, Notification
from marketplace.errors import Conflict, InvalidInput, NotFound
from marketplace.models import Team

from . import statements
from .ledger import Leg, ledger_post, platform_account, team_account
from .models import (
    AccountKind,
    Adjustment,
    AdjustmentKind,
    AdjustmentStatus,
    AuditEntry,
    BillingCustomer,
    BillingStanding,
    EventStatus,
    Invoice,
    InvoiceStatus,
    LedgerTransaction,
    Payout,
    PayoutStatus,
    Posting,
    SellerAccount,
    Statement,
    StatementPayable,
    StripeEvent,
    TransactionKind,
)
from .money import split_by_weights
from .selectors import CLAWBACK_PREFIX
from .stripe_gateway import GatewayError, PaymentDeclined, gateway

log = logging.getLogger(__name__)


# --- buyers and sellers -----------------------------------------------------------------------------


def customer_ensure(*, team: Team) -> BillingCustomer:
    """The team's Stripe customer, created once (the key makes a retried create return the first)."""
    if (found := BillingCustomer.objects.filter(team=team).first()) is not None:
        return found
    customer_id = gateway().customer_create(team_id=team.pk, name=team.name, key=f"customer:team:{team.pk}")
    customer, _ = BillingCustomer.objects.get_or_create(
        team=team, defaults={"stripe_customer_id": customer_id}
    )
    return customer


def payment_setup_start(*, team: Team, success_url: str, cancel_url: str) -> str:
    """A Checkout (setup mode) URL where the team's owner saves a payment method."""
    customer = customer_ensure(team=team)
    attempt = (
        BillingCustomer.objects.filter(pk=customer.pk).values_list("setup_session_id", flat=True).first()
    )
    session_id, url = gateway().setup_session_create(
        customer=customer.stripe_customer_id,
        success_url=success_url,
        cancel_url=cancel_url,
        key=f"customer:{customer.pk}:setup:{timezone.now():%Y%m%d%H%M}:{attempt or ''}",
    )
    BillingCustomer.objects.filter(pk=customer.pk).update(setup_session_id=session_id)
    return url


def seller_account_ensure(*, team: Team) -> SellerAccount:
    """The team's Connect Express account, created once."""
    if (found := SellerAccount.objects.filter(team=team).first()) is not None:
        return found
    account_id = gateway().account_create(team_id=team.pk, key=f"connect:team:{team.pk}")
    account, _ = SellerAccount.objects.get_or_create(team=team, defaults={"stripe_account_id": account_id})
    return account


def seller_onboarding_link(*, team: Team, refresh_url: str, return_url: str) -> str:
    """A fresh Stripe onboarding link for the team's Express account."""
    account = seller_account_ensure(team=team)
    return gateway().account_link_create(
        account=account.stripe_account_id, refresh_url=refresh_url, return_url=return_url
    )


def seller_account_refresh(*, team: Team) -> SellerAccount | None:
    """Ask Stripe for the team's account state now (a person just came back from onboarding)."""
    account = SellerAccount.objects.filter(team=team).first()
    if account is None:
        return None
    found = gateway().account_retrieve(account=account.stripe_account_id)
    seller_account_sync(
        stripe_account_id=account.stripe_account_id,
        details_submitted=bool(found.get("details_submitted")),
        payouts_enabled=bool(found.get("payouts_enabled")),
    )
    account.refresh_from_db()
    return account


def seller_account_sync(*, stripe_account_id: str, details_submitted: bool, payouts_enabled: bool) -> None:
    """Record an account's onboarding state (from a webhook); held payouts may now go."""
    SellerAccount.objects.filter(stripe_account_id=stripe_account_id).update(
        details_submitted=details_submitted, payouts_enabled=payouts_enabled
    )
    if payouts_enabled:
        Payout.objects.filter(
            seller__seller_account__stripe_account_id=stripe_account_id, status=PayoutStatus.HELD
        ).update(status=PayoutStatus.PENDING)


# --- invoices -----------------------------------------------------------------------------------------


def period_of(at: dt.date | dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The billing period [start, end) holding a day or instant: UTC days, ISO weeks from Monday, or
    statement periods (BILLING_PERIOD=statement, the demo's short invoices)."""
    if settings.BILLING_PERIOD == "statement":
        start = statements.period_start_of(at)
        return start, start + statements.period_length()
    day = at.astimezone(dt.UTC).date() if isinstance(at, dt.datetime) else at
    if settings.BILLING_PERIOD == "weekly":
        day -= dt.timedelta(days=day.weekday())
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        return start, start + dt.timedelta(days=7)
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


@transaction.atomic
def invoice_open(*, team_id: int, currency: str, period_start: dt.date | dt.datetime) -> Invoice:
    """The team's invoice for a period, claiming every uninvoiced statement of periods before its end."""
    start, end = period_of(period_start)
    invoice, _ = Invoice.objects.get_or_create(
        team_id=team_id, currency=currency, period_start=start, defaults={"period_end": end}
    )
    if invoice.status == InvoiceStatus.PENDING:
        Statement.objects.filter(
            team_id=team_id, currency=currency, invoice__isnull=True, period_start__lt=invoice.period_end
        ).update(invoice=invoice)
        total = Statement.objects.filter(invoice=invoice).aggregate(
            c=Sum("charge_cents"), r=Sum("credit_cents")
        )
        amount = (total["c"] or 0) - (total["r"] or 0)
        Invoice.objects.filter(pk=invoice.pk).update(amount_cents=amount)
        invoice.amount_cents = amount
    return invoice


def invoices_open_due(*, now: dt.datetime | None = None) -> list[int]:
    """Open the invoice of every team-period that has ended and has uninvoiced statements."""
    now = now or timezone.now()
    due = now - dt.timedelta(seconds=settings.BILLING_GRACE_SECONDS)
    opened: list[int] = []
    rows = (
        Statement.objects.filter(invoice__isnull=True)
        .values_list("team_id", "currency", "period_start")
        .order_by("team_id", "currency", "period_start")
    )
    seen: set[tuple[int, str, dt.datetime]] = set()
    for team_id, currency, period_start in rows:
        start, end = period_of(period_start)
        if end > due or (team_id, currency, start) in seen:
            continue
        seen.add((team_id, currency, start))
        opened.append(invoice_open(team_id=team_id, currency=currency, period_start=start).pk)
    return opened


def _advance(invoice: Invoice, old: str, new: str, **fields: Any) -> bool:
    """Record that a phase is done: one conditional update from the phase we started in."""
    changed = Invoice.objects.filter(pk=invoice.pk, status=old).update(status=new, **fields)
    invoice.refresh_from_db()
    return changed == 1


def invoice_advance(*, invoice_id: int) -> Invoice:
    """Carry an invoice through create -> items -> finalize -> pay, resuming where it stopped."""
    invoice = Invoice.objects.select_related("team").get(pk=invoice_id)
    gw = gateway()
    if invoice.status == InvoiceStatus.PENDING:
        if invoice.amount_cents <= 0:
            # Nothing to charge (credits ate the period): no Stripe invoice, nothing to pay out.
            _advance(invoice, InvoiceStatus.PENDING, InvoiceStatus.EMPTY)
            return invoice
        customer = customer_ensure(team=invoice.team)
        stripe_id = gw.invoice_create(
            customer=customer.stripe_customer_id,
            currency=invoice.currency,
            invoice_id=invoice.pk,
            key=f"invoice:{invoice.pk}:create",
        )
        _advance(invoice, InvoiceStatus.PENDING, InvoiceStatus.CREATED, stripe_invoice_id=stripe_id)
    if invoice.status == InvoiceStatus.CREATED:
        customer = customer_ensure(team=invoice.team)
        for statement in Statement.objects.filter(invoice=invoice, stripe_invoice_item_id="").order_by("pk"):
            if statement.net_cents == 0:
                continue
            item_id = gw.invoice_item_add(
                customer=customer.stripe_customer_id,
                invoice=invoice.stripe_invoice_id,
                amount=statement.net_cents,
                currency=invoice.currency,
                description=(
                    f"Lease {statement.lease_id}, {statement.day}: {statement.delivered_gpu_seconds} of "
                    f"{statement.leased_gpu_seconds} GPU-seconds delivered"
                    + (" (adjustment)" if statement.seq else "")
                ),
                statement_id=statement.pk,
                key=f"stmt:{statement.pk}:item",
            )
            Statement.objects.filter(pk=statement.pk, stripe_invoice_item_id="").update(
                stripe_invoice_item_id=item_id
            )
        _advance(invoice, InvoiceStatus.CREATED, InvoiceStatus.ITEMIZED)
    if invoice.status == InvoiceStatus.ITEMIZED:
        gw.invoice_finalize(invoice=invoice.stripe_invoice_id, key=f"invoice:{invoice.pk}:finalize")
        _advance(invoice, InvoiceStatus.ITEMIZED, InvoiceStatus.FINALIZED)
    if invoice.status == InvoiceStatus.FINALIZED:
        try:
            paid = gw.invoice_pay(
                invoice=invoice.stripe_invoice_id, key=f"invoice:{invoice.pk}:pay:{invoice.attempt_count}"
            )
        except PaymentDeclined as exc:
            invoice_mark_failed(stripe_invoice_id=invoice.stripe_invoice_id, reason=str(exc))
        else:
            invoice_mark_paid(stripe_invoice_id=invoice.stripe_invoice_id, charge_id=paid.charge_id)
        invoice.refresh_from_db()
    return invoice


def invoice_retry(*, invoice_id: int) -> Invoice:
    """Try a failed invoice's payment again (a new attempt, so a new idempotency key)."""
    invoice = Invoice.objects.get(pk=invoice_id)
    if invoice.status != InvoiceStatus.FAILED:
        raise Conflict(f"Invoice {invoice_id} is {invoice.status}, not failed.")
    _advance(invoice, InvoiceStatus.FAILED, InvoiceStatus.FINALIZED)
    return invoice_advance(invoice_id=invoice_id)


@transaction.atomic
def invoice_mark_paid(*, stripe_invoice_id: str, charge_id: str) -> Invoice | None:
    """Record a paid invoice once: the ledger payment, the team's standing, its payouts."""
    invoice = Invoice.objects.select_for_update().filter(stripe_invoice_id=stripe_invoice_id).first()
    if invoice is None:
        return None
    if invoice.status != InvoiceStatus.PAID:
        Invoice.objects.filter(pk=invoice.pk).update(
            status=InvoiceStatus.PAID,
            stripe_charge_id=charge_id or invoice.stripe_charge_id,
            paid_at=timezone.now(),
        )
    elif charge_id and not invoice.stripe_charge_id:
        Invoice.objects.filter(pk=invoice.pk).update(stripe_charge_id=charge_id)
    invoice.refresh_from_db()
    receivable = team_account(team=invoice.team, kind=AccountKind.RECEIVABLE, currency=invoice.currency)
    clearing = platform_account(kind=AccountKind.CLEARING, currency=invoice.currency)
    ledger_post(
        key=f"invoice:{invoice.pk}:paid",
        kind=TransactionKind.PAYMENT,
        legs=[Leg(clearing, invoice.amount_cents), Leg(receivable, -invoice.amount_cents)],
        memo=f"Stripe invoice {stripe_invoice_id}",
    )
    if not Invoice.objects.filter(team=invoice.team, status=InvoiceStatus.FAILED).exists():
        BillingStanding.objects.filter(team=invoice.team).update(failing_since=None, warned_at=None)
    if settings.BILLING_SELLER_CLAWBACK:
        for statement_id in (
            Statement.objects.filter(invoice=invoice).exclude(credit_cents=0).values_list("pk", flat=True)
        ):
            statement_clawback(statement_id=statement_id)
    payouts_create(invoice=invoice)
    return invoice


@transaction.atomic
def invoice_mark_failed(*, stripe_invoice_id: str, reason: str) -> Invoice | None:
    """Record a failed payment (never over a paid invoice) and warn the team once per attempt."""
    invoice = Invoice.objects.select_for_update().filter(stripe_invoice_id=stripe_invoice_id).first()
    if invoice is None or invoice.status == InvoiceStatus.PAID:
        return invoice
    now = timezone.now()
    if invoice.status in (InvoiceStatus.FINALIZED, InvoiceStatus.ITEMIZED, InvoiceStatus.CREATED):
        Invoice.objects.filter(pk=invoice.pk).update(
            status=InvoiceStatus.FAILED,
            attempt_count=invoice.attempt_count + 1,
            last_error=reason[:500],
            failed_at=now,
        )
    standing, _ = BillingStanding.objects.get_or_create(team=invoice.team)
    if standing.failing_since is None:
        BillingStanding.objects.filter(pk=standing.pk, failing_since__isnull=True).update(
            failing_since=now, warned_at=now
        )
        Notification.objects.get_or_create(
            key=f"billing:invoice:{invoice.pk}:failed:{invoice.attempt_count}",
            defaults={
                "team": invoice.team,
                "event": "billing.payment_failed",
                "payload": {
                    "invoice": invoice.pk,
                    "amount_cents": invoice.amount_cents,
                    "suspend_after_days": settings.BILLING_SUSPEND_AFTER_DAYS,
                },
            },
        )
    invoice.refresh_from_db()
    return invoice


# --- payouts ------------------------------------------------------------------------------------------


def statement_clawback(*, statement_id: int) -> LedgerTransaction | None:
    """Take a statement's under-delivery credit back from the sellers who served the lease.

    The buyer's SLA credit is first funded by the platform (the credits account, at statement
    time); this moves it onto the sellers' payables, split by the lease's sources as the charge
    was (`split_by_weights` on revenue, else GPUs). Keyed `clawback:stmt:{id}`, so it is posted
    once; an adjustment statement's negative credit gives the money back the same way.
    """
    statement = Statement.objects.select_related("lease").get(pk=statement_id)
    if statement.credit_cents == 0:
        return None
    sources = list(
        LeaseSource.objects.filter(lease_id=statement.lease_id)
        .select_related("offer__cluster__team")
        .order_by("pk")
    )
    weights = [s.revenue_cents for s in sources]
    if not any(weights):
        weights = [s.gpus for s in sources]
    shares: dict[int, int] = defaultdict(int)
    teams: dict[int, Team] = {}
    for source, cents in zip(sources, split_by_weights(statement.credit_cents, weights), strict=True):
        team = source.offer.cluster.team
        teams[team.pk] = team
        shares[team.pk] += cents
    currency = statement.currency
    legs = [Leg(platform_account(kind=AccountKind.CREDITS, currency=currency), -statement.credit_cents)]
    legs += [
        Leg(team_account(team=teams[team_id], kind=AccountKind.PAYABLE, currency=currency), cents)
        for team_id, cents in sorted(shares.items())
    ]
    return ledger_post(
        key=f"{CLAWBACK_PREFIX}{statement.pk}",
        kind=TransactionKind.OTHER,
        legs=legs,
        memo=f"clawback of the under-delivery credit on lease {statement.lease_id} {statement.day}",
    )


def clawbacks_of_invoice(*, invoice: Invoice) -> dict[int, int]:
    """Cents taken back from each seller (team id) for the statements of one invoice."""
    keys = [
        f"{CLAWBACK_PREFIX}{pk}"
        for pk in Statement.objects.filter(invoice=invoice).values_list("pk", flat=True)
    ]
    taken: dict[int, int] = defaultdict(int)
    for team_id, cents in Posting.objects.filter(
        transaction__idempotency_key__in=keys, account__kind=AccountKind.PAYABLE
    ).values_list("account__team_id", "amount_cents"):
        taken[team_id] += cents
    return taken


def payouts_create(*, invoice: Invoice) -> list[Payout]:
    """One payout row per seller of a paid invoice: its payables there less any clawbacks there.

    A seller whose clawbacks exceed its share gets no payout; the deficit stays on its payable
    (which may go negative) until staff settle it.
    """
    sums: dict[int, int] = defaultdict(int)
    for seller_id, cents in StatementPayable.objects.filter(statement__invoice=invoice).values_list(
        "seller_id", "payable_cents"
    ):
        sums[seller_id] += cents
    for seller_id, cents in clawbacks_of_invoice(invoice=invoice).items():
        sums[seller_id] -= cents
    made = []
    for seller_id, cents in sorted(sums.items()):
        if cents > 0:
            payout, _ = Payout.objects.get_or_create(
                invoice=invoice,
                seller_id=seller_id,
                defaults={"amount_cents": cents, "currency": invoice.currency},
            )
            made.append(payout)
    return made


def payout_send(*, payout_id: int) -> Payout:
    """Transfer a seller's share (Stripe first, then the ledger, both keyed by `payout:{id}`)."""
    payout = Payout.objects.select_related("invoice", "seller").get(pk=payout_id)
    if payout.status not in (PayoutStatus.PENDING, PayoutStatus.HELD, PayoutStatus.SENT):
        return payout
    if payout.invoice.status != InvoiceStatus.PAID:
        raise Conflict(f"Payout {payout_id}: its invoice is not paid.")
    account = SellerAccount.objects.filter(team=payout.seller).first()
    if payout.status != PayoutStatus.SENT:
        if account is None or not account.payouts_enabled:
            Payout.objects.filter(pk=payout.pk, status=PayoutStatus.PENDING).update(status=PayoutStatus.HELD)
            payout.refresh_from_db()
            return payout
        transfer_id = gateway().transfer_create(
            amount=payout.amount_cents,
            currency=payout.currency,
            destination=account.stripe_account_id,
            transfer_group=f"invoice:{payout.invoice_id}",
            source_transaction=payout.invoice.stripe_charge_id,
            payout_id=payout.pk,
            key=f"payout:{payout.pk}",
        )
        Payout.objects.filter(pk=payout.pk, status__in=[PayoutStatus.PENDING, PayoutStatus.HELD]).update(
            status=PayoutStatus.SENT, stripe_transfer_id=transfer_id, sent_at=timezone.now()
        )
    with transaction.atomic():
        payable = team_account(team=payout.seller, kind=AccountKind.PAYABLE, currency=payout.currency)
        clearing = platform_account(kind=AccountKind.CLEARING, currency=payout.currency)
        tx = ledger_post(
            key=f"payout:{payout.pk}",
            kind=TransactionKind.PAYOUT,
            legs=[Leg(payable, payout.amount_cents), Leg(clearing, -payout.amount_cents)],
            memo=f"transfer for invoice {payout.invoice_id}",
        )
        Payout.objects.filter(pk=payout.pk, transaction__isnull=True).update(transaction=tx)
    payout.refresh_from_db()
    return payout


def payouts_run() -> list[int]:
    """Send every pending payout (and finish any whose ledger entry is missing)."""
    done = []
    for payout_id in Payout.objects.filter(
        status__in=[PayoutStatus.PENDING, PayoutStatus.SENT], transaction__isnull=True
    ).values_list("pk", flat=True):
        try:
            payout_send(payout_id=payout_id)
            done.append(payout_id)
        except GatewayError as exc:
            Payout.objects.filter(pk=payout_id).update(last_error=str(exc)[:500])
    return done


# --- webhooks -----------------------------------------------------------------------------------------


def event_record(*, event: dict[str, Any]) -> tuple[StripeEvent, bool]:
    """Store a verified event once by its Stripe id; True when it is new."""
    if not event.get("id") or not event.get("type"):
        raise InvalidInput.one("event", "malformed", "an event needs an id and a type")
    return StripeEvent.objects.get_or_create(
        stripe_id=event["id"], defaults={"type": event["type"], "payload": event}
    )


def event_handle(*, event_id: int) -> str:
    """Apply one stored event; every handler is order-insensitive and safe to repeat."""
    event = StripeEvent.objects.filter(pk=event_id).first()
    if event is None:
        raise NotFound(f"Stripe event {event_id} not found.")
    obj = (event.payload.get("data") or {}).get("object") or {}
    kind = event.type
    outcome = EventStatus.PROCESSED
    if kind in ("invoice.paid", "invoice.payment_succeeded"):
        charge = gateway().invoice_charge(invoice=obj["id"]) if obj.get("amount_paid") else ""
        if invoice_mark_paid(stripe_invoice_id=obj["id"], charge_id=charge) is None:
            outcome = EventStatus.IGNORED
    elif kind == "invoice.payment_failed":
        if invoice_mark_failed(stripe_invoice_id=obj["id"], reason="payment failed (webhook)") is None:
            outcome = EventStatus.IGNORED
    elif kind == "account.updated":
        seller_account_sync(
            stripe_account_id=obj["id"],
            details_submitted=bool(obj.get("details_submitted")),
            payouts_enabled=bool(obj.get("payouts_enabled")),
        )
    elif kind == "checkout.session.completed":
        BillingCustomer.objects.filter(stripe_customer_id=obj.get("customer")).update(has_payment_method=True)
    elif kind in ("transfer.reversed",):
        Payout.objects.filter(stripe_transfer_id=obj["id"]).update(status=PayoutStatus.REVERSED)
    elif kind in ("transfer.created", "transfer.updated"):
        payout_id = (obj.get("metadata") or {}).get("gridx_payout_id")
        Payout.objects.filter(pk=payout_id or 0, stripe_transfer_id="").update(stripe_transfer_id=obj["id"])
    elif kind in ("charge.refunded", "refund.created", "charge.dispute.created", "credit_note.created"):
        pass  # kept as rows: the console lists refunds and disputes from them
    else:
        outcome = EventStatus.IGNORED
    StripeEvent.objects.filter(pk=event.pk).update(status=outcome, processed_at=timezone.now())
    return str(outcome)


# --- console: adjustments and the audit log -------------------------------------------------------


def audit(*, actor: Any, action: str, obj: Any = None, **detail: Any) -> None:
    """Record one staff action."""
    AuditEntry.objects.create(
        actor=actor,
        action=action,
        object_type=type(obj).__name__ if obj is not None else "",
        object_id=str(getattr(obj, "pk", "") or ""),
        detail=detail,
    )


def adjustment_request(*, actor: Any, invoice_id: int, kind: str, amount_cents: int, reason: str) -> Any:
    """A staff credit or refund; above the threshold it waits for a second staff member."""
    if not getattr(actor, "is_staff", False):
        raise NotFound(f"Invoice {invoice_id} not found.")
    if kind not in AdjustmentKind.values:
        raise InvalidInput.one("kind", "invalid_choice", "must be credit or refund")
    if amount_cents <= 0:
        raise InvalidInput.one("amount_cents", "not_positive", "must be a positive number of cents")
    if not reason.strip():
        raise InvalidInput.one("reason", "required", "say why: the reason is kept with the adjustment")
    invoice = Invoice.objects.filter(pk=invoice_id).first()
    if invoice is None:
        raise NotFound(f"Invoice {invoice_id} not found.")
    if kind == AdjustmentKind.REFUND and (
        invoice.status != InvoiceStatus.PAID or not invoice.stripe_charge_id
    ):
        raise InvalidInput.one("kind", "not_paid", "only a paid invoice can be refunded")
    if kind == AdjustmentKind.CREDIT and not invoice.stripe_invoice_id:
        raise InvalidInput.one("kind", "no_invoice", "the invoice is not in Stripe yet")
    refunded = (
        Adjustment.objects.filter(invoice=invoice)
        .exclude(status=AdjustmentStatus.REJECTED)
        .aggregate(s=Sum("amount_cents"))["s"]
        or 0
    )
    if refunded + amount_cents > invoice.amount_cents:
        raise InvalidInput.one("amount_cents", "too_large", "credits and refunds cannot exceed the invoice")
    needs_second = amount_cents > settings.BILLING_APPROVAL_THRESHOLD_CENTS
    adjustment = Adjustment.objects.create(
        invoice=invoice,
        kind=kind,
        amount_cents=amount_cents,
        currency=invoice.currency,
        reason=reason.strip(),
        requested_by=actor,
        status=AdjustmentStatus.AWAITING_APPROVAL if needs_second else AdjustmentStatus.APPROVED,
    )
    audit(actor=actor, action="adjustment.requested", obj=adjustment, amount_cents=amount_cents, kind=kind)
    if not needs_second:
        adjustment = adjustment_apply(adjustment_id=adjustment.pk)
    return adjustment


def adjustment_approve(*, actor: Any, adjustment_id: int) -> Any:
    """A second staff member approves a large adjustment, which is then applied."""
    adjustment = Adjustment.objects.filter(pk=adjustment_id).first()
    if adjustment is None or not getattr(actor, "is_staff", False):
        raise NotFound(f"Adjustment {adjustment_id} not found.")
    if adjustment.requested_by_id == actor.pk:
        raise Conflict("A second staff member must approve; you requested this adjustment.", code="four_eyes")
    changed = Adjustment.objects.filter(pk=adjustment_id, status=AdjustmentStatus.AWAITING_APPROVAL).update(
        status=AdjustmentStatus.APPROVED, approved_by=actor
    )
    if changed != 1:
        raise Conflict(f"Adjustment {adjustment_id} is not awaiting approval.")
    audit(actor=actor, action="adjustment.approved", obj=adjustment)
    return adjustment_apply(adjustment_id=adjustment_id)


def adjustment_apply(*, adjustment_id: int) -> Any:
    """Stripe credit note or refund (keyed by the adjustment), then its ledger transaction."""
    adjustment = Adjustment.objects.select_related("invoice__team").get(pk=adjustment_id)
    if adjustment.status not in (AdjustmentStatus.APPROVED, AdjustmentStatus.APPLIED):
        raise Conflict(f"Adjustment {adjustment_id} is {adjustment.status}.")
    invoice, gw = adjustment.invoice, gateway()
    if not adjustment.stripe_object_id:
        if adjustment.kind == AdjustmentKind.REFUND:
            object_id = gw.refund_create(
                charge=invoice.stripe_charge_id,
                amount=adjustment.amount_cents,
                adjustment_id=adjustment.pk,
                key=f"adjustment:{adjustment.pk}",
            )
        else:
            object_id = gw.credit_note_create(
                invoice=invoice.stripe_invoice_id,
                amount=adjustment.amount_cents,
                memo=adjustment.reason,
                adjustment_id=adjustment.pk,
                key=f"adjustment:{adjustment.pk}",
            )
        Adjustment.objects.filter(pk=adjustment.pk, stripe_object_id="").update(stripe_object_id=object_id)
    credits = platform_account(kind=AccountKind.CREDITS, currency=adjustment.currency)
    # A credit lowers what the buyer owes; a refund returns cash already received.
    other = (
        platform_account(kind=AccountKind.CLEARING, currency=adjustment.currency)
        if adjustment.kind == AdjustmentKind.REFUND
        else team_account(team=invoice.team, kind=AccountKind.RECEIVABLE, currency=adjustment.currency)
    )
    with transaction.atomic():
        tx = ledger_post(
            key=f"adjustment:{adjustment.pk}",
            kind=TransactionKind.REFUND
            if adjustment.kind == AdjustmentKind.REFUND
            else TransactionKind.CREDIT,
            legs=[Leg(credits, adjustment.amount_cents), Leg(other, -adjustment.amount_cents)],
            memo=adjustment.reason,
        )
        Adjustment.objects.filter(pk=adjustment.pk).exclude(status=AdjustmentStatus.APPLIED).update(
            status=AdjustmentStatus.APPLIED, transaction=tx, applied_at=timezone.now()
        )
    adjustment.refresh_from_db()
    return adjustment
