"""Billing reads, including the check that the marketplace asks before a team places a bid."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from auctions.models import Lease
from marketplace.errors import NotFound, PermissionDenied
from marketplace.models import Team
from marketplace.services import BidGuard

from .models import (
    Account,
    AccountKind,
    BillingCustomer,
    BillingStanding,
    Invoice,
    Payout,
    Posting,
    SellerAccount,
    Statement,
    StatementPayable,
)
from .money import round_half_away
from .stripe_gateway import GatewayError, gateway

# Ledger keys of seller clawbacks (billing.services.statement_clawback): `clawback:stmt:{id}`.
CLAWBACK_PREFIX = "clawback:stmt:"


@functools.cache
def failing_since_sql() -> str:
    """The team's failing-since time as a scalar subquery of its id (one `%s`): read by the
    marketplace's book query, under the team lock, for the bid guard below."""
    table = connection.ops.quote_name(BillingStanding._meta.db_table)
    return f"SELECT failing_since FROM {table} WHERE team_id = %s"  # noqa: S608


def team_failing_since(team: Team) -> dt.datetime | None:
    """Since when the team's payments have been failing, or None when they are not."""
    return BillingStanding.objects.filter(team=team).values_list("failing_since", flat=True).first()


def may_bid_given(failing_since: dt.datetime | None, *, now: dt.datetime | None = None) -> bool:
    """False once payments have failed for BILLING_SUSPEND_AFTER_DAYS days; True while they have
    not, and again once the team pays (which clears `failing_since`)."""
    if failing_since is None:
        return True
    now = now or timezone.now()
    return now - failing_since < dt.timedelta(days=settings.BILLING_SUSPEND_AFTER_DAYS)


def team_may_bid(team: Team, *, now: dt.datetime | None = None) -> bool:
    """False once a team has failed to pay for BILLING_SUSPEND_AFTER_DAYS days; True again once it pays."""
    return may_bid_given(team_failing_since(team), now=now)


def bid_guard_check(team: Team, failing_since: dt.datetime | None) -> None:
    """Refuse new bids of a team suspended for failed payments (the check of BILLING_BID_GUARD)."""
    if not may_bid_given(failing_since):
        raise PermissionDenied(
            f"team {team.slug} cannot place bids: its payment has failed for "
            f"{settings.BILLING_SUSPEND_AFTER_DAYS} days or more; pay the open invoice to resume",
            code="billing_suspended",
        )


# Registered with the marketplace in BillingConfig.ready: its value is read in the book query.
BILLING_BID_GUARD = BidGuard(sql=failing_since_sql, read=team_failing_since, check=bid_guard_check)


# --- What a team sees of its own money (the billing pages and the billing API) --------------------
# Every read takes the caller's team: another team's invoice, statement or lease is NotFound.


def statement_list(*, team: Team) -> QuerySet[Statement]:
    """The team's statements as a buyer (one per lease and UTC day, adjustments too), newest first."""
    return (
        Statement.objects.filter(team=team)
        .select_related("lease__gpu_model", "invoice")
        .order_by("-day", "-id")
    )


def statement_get(*, team: Team, statement_id: int) -> Statement:
    """One of the team's statements, with its lease; another team's is NotFound."""
    found = statement_list(team=team).filter(pk=statement_id).first()
    if found is None:
        raise NotFound(f"Statement {statement_id} not found.")
    return found


def invoice_list(*, team: Team) -> QuerySet[Invoice]:
    """The team's invoices, newest period first."""
    return Invoice.objects.filter(team=team).order_by("-period_start", "-id")


def invoice_get(*, team: Team, invoice_id: int) -> Invoice:
    """One of the team's invoices; another team's is NotFound (it does not exist for them)."""
    found = invoice_list(team=team).filter(pk=invoice_id).first()
    if found is None:
        raise NotFound(f"Invoice {invoice_id} not found.")
    return found


def invoice_lines(*, invoice: Invoice) -> QuerySet[Statement]:
    """An invoice's lines: its statements, each with the lease it bills."""
    return invoice.statements.select_related("lease__gpu_model").order_by("day", "lease_id", "seq")


def invoice_lines_by_invoice(*, invoice_ids: list[int]) -> dict[int, list[Statement]]:
    """The lines of several invoices in one query (the API's invoice list)."""
    lines: dict[int, list[Statement]] = {i: [] for i in invoice_ids}
    for statement in (
        Statement.objects.filter(invoice_id__in=invoice_ids)
        .select_related("lease__gpu_model")
        .order_by("day", "lease_id", "seq")
    ):
        assert statement.invoice_id is not None
        lines[statement.invoice_id].append(statement)
    return lines


def lease_statements(*, team: Team, lease_id: int) -> tuple[Lease, QuerySet[Statement]]:
    """A lease the team bought, and its statements; another team's lease is NotFound."""
    lease = Lease.objects.filter(pk=lease_id, team=team).select_related("gpu_model").first()
    if lease is None:
        raise NotFound(f"Lease {lease_id} not found.")
    return lease, statement_list(team=team).filter(lease=lease)


def price_cents_per_gpu_hour(payment_cents: int, gpu_seconds: int) -> int:
    """A lease's price per GPU-hour in whole cents, for display (charges use the exact fraction)."""
    return round_half_away(payment_cents * 3600, gpu_seconds) if gpu_seconds > 0 else 0


@dataclass(frozen=True)
class Balance:
    """One currency's figure of a team account, on its growing side (what a person calls it)."""

    currency: str
    cents: int


def team_balances(*, team: Team, kind: str) -> list[Balance]:
    """The team's receivable (what it owes) or payable (what it is owed) per currency."""
    return [
        Balance(a.currency, a.normal_balance_cents)
        for a in Account.objects.filter(team=team, kind=kind).order_by("currency")
    ]


@dataclass(frozen=True)
class PaymentMethod:
    """What a buyer has on file with Stripe: nothing, a card, or unknown when Stripe did not answer."""

    state: str  # "none", "card", "unknown"
    brand: str = ""
    last4: str = ""


def payment_method(*, team: Team) -> PaymentMethod:
    """The team's default payment method, asked of Stripe (the stand-in in tests and the demo).

    No customer yet means no card and no call; Stripe down means "unknown", never an error page.
    """
    customer = BillingCustomer.objects.filter(team=team).first()
    if customer is None:
        return PaymentMethod("none")
    try:
        card = gateway().customer_card(customer=customer.stripe_customer_id)
    except GatewayError:
        return PaymentMethod("card" if customer.has_payment_method else "unknown")
    if card is None:
        return PaymentMethod("none")
    return PaymentMethod("card", card.get("brand", ""), card.get("last4", ""))


def seller_account(*, team: Team) -> SellerAccount | None:
    """The team's Stripe Connect account and its onboarding state, if it has started onboarding."""
    return SellerAccount.objects.filter(team=team).first()


def earnings_list(*, team: Team) -> QuerySet[StatementPayable]:
    """The team's earnings as a seller: its share of each statement, newest first."""
    return (
        StatementPayable.objects.filter(seller=team)
        .select_related("statement__lease__gpu_model", "statement__invoice")
        .order_by("-statement__day", "-id")
    )


def payout_list(*, team: Team) -> QuerySet[Payout]:
    """The team's payouts as a seller, newest first."""
    return Payout.objects.filter(seller=team).select_related("invoice").order_by("-id")


def clawback_list(*, team: Team) -> QuerySet[Posting]:
    """What was taken back from (> 0) or given back to (< 0) the team's earnings for buyers'
    under-delivery credits: the postings of `clawback:stmt:{id}` transactions on its payable."""
    return (
        Posting.objects.filter(
            account__team=team,
            account__kind=AccountKind.PAYABLE,
            transaction__idempotency_key__startswith=CLAWBACK_PREFIX,
        )
        .select_related("transaction")
        .order_by("-id")
    )
