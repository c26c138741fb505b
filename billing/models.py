"""Billing: a double-entry ledger, statements from verified delivery, Stripe objects and the console.

Money is integer cents with a currency. Postings are signed: debits positive, credits negative; the
postings of one transaction sum to zero per currency, enforced by PostgreSQL (migration 0002).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from marketplace.models import Team


class AccountKind(models.TextChoices):
    RECEIVABLE = "receivable", "Buyer receivable"
    PAYABLE = "payable", "Seller payable"
    FEES = "fees", "Platform fees"
    CLEARING = "clearing", "Stripe clearing"
    CREDITS = "credits", "Credits granted"


class Normal(models.TextChoices):
    DEBIT = "debit", "Debit"
    CREDIT = "credit", "Credit"


# Which side each kind grows on, and whether it may go below zero on that side. A buyer may hold a
# credit balance; a seller may owe a clawback after a downward adjustment (recovered from later
# payouts); the platform may fund credits from its Stripe balance. Fees and credits never go negative.
ACCOUNT_RULES: dict[str, tuple[str, bool]] = {
    AccountKind.RECEIVABLE: (Normal.DEBIT, True),
    AccountKind.PAYABLE: (Normal.CREDIT, True),
    AccountKind.FEES: (Normal.CREDIT, False),
    AccountKind.CLEARING: (Normal.DEBIT, True),
    AccountKind.CREDITS: (Normal.DEBIT, False),
}
TEAM_KINDS = (AccountKind.PAYABLE, AccountKind.RECEIVABLE)  # a tuple: migrations need a stable order


class Account(models.Model):
    """A ledger account in one currency; `balance_cents` caches the sum of its postings (debit > 0)."""

    code = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=AccountKind.choices)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.PROTECT, related_name="accounts")
    currency = models.CharField(max_length=3)
    normal = models.CharField(max_length=6, choices=Normal.choices)
    allow_overdraft = models.BooleanField(default=False)
    balance_cents = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=AccountKind.values), name="account_kind_valid"),
            # Team accounts belong to a team; platform accounts to nobody.
            models.CheckConstraint(
                condition=(Q(kind__in=list(TEAM_KINDS)) & Q(team__isnull=False))
                | (~Q(kind__in=list(TEAM_KINDS)) & Q(team__isnull=True)),
                name="account_team_matches_kind",
            ),
            # The database refuses any write that would overdraw an account without overdraft.
            models.CheckConstraint(
                condition=Q(allow_overdraft=True)
                | (Q(normal=Normal.DEBIT) & Q(balance_cents__gte=0))
                | (Q(normal=Normal.CREDIT) & Q(balance_cents__lte=0)),
                name="account_no_overdraft",
            ),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def normal_balance_cents(self) -> int:
        """The balance on the account's growing side (what a person calls its balance)."""
        return self.balance_cents if self.normal == Normal.DEBIT else -self.balance_cents


class TransactionKind(models.TextChoices):
    STATEMENT = "statement", "Statement"
    PAYMENT = "payment", "Payment received"
    PAYOUT = "payout", "Payout"
    CREDIT = "credit", "Credit"
    REFUND = "refund", "Refund"
    REVERSAL = "reversal", "Reversal"
    OTHER = "other", "Other"


class LedgerTransaction(models.Model):
    """One balanced set of postings; append-only. `idempotency_key` is derived from its cause."""

    idempotency_key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=TransactionKind.choices)
    memo = models.CharField(max_length=500, blank=True, default="")
    # At most one reversal per transaction: a correction cannot be applied twice.
    reverses = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.idempotency_key}"


class Posting(models.Model):
    """One leg of a transaction: signed integer cents (debit > 0, credit < 0) on one account."""

    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="postings")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="postings")
    amount_cents = models.BigIntegerField()
    currency = models.CharField(max_length=3)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["account", "transaction"])]
        constraints = [models.CheckConstraint(condition=~Q(amount_cents=0), name="posting_not_zero")]

    def __str__(self) -> str:
        return f"{self.amount_cents} {self.currency} on {self.account_id}"


class StatementKind(models.TextChoices):
    REGULAR = "regular", "Regular"
    ADJUSTMENT = "adjustment", "Adjustment"


class Statement(models.Model):
    """What one lease owes for one statement period (a UTC day by default), from verified delivery.

    Final once posted.

    A regular statement has `seq` 0; late evidence adds adjustment statements (seq 1, 2, …) whose
    money fields are the change against everything stated before, never an edit. Delivery figures
    are the totals known when the statement was made.
    """

    lease = models.ForeignKey("auctions.Lease", on_delete=models.PROTECT, related_name="statements")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="statements")
    day = models.DateField()
    # The statement period's start: the day's midnight (UTC) unless BILLING_STATEMENT_SECONDS makes
    # periods shorter than a day (the demo's few minutes); `day` stays the UTC day it falls in.
    period_start = models.DateTimeField()
    seq = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=16, choices=StatementKind.choices, default=StatementKind.REGULAR)
    currency = models.CharField(max_length=3)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    leased_gpu_seconds = models.BigIntegerField()
    delivered_gpu_seconds = models.BigIntegerField()
    open_anomalies = models.PositiveIntegerField(default=0)
    delivery_complete = models.BooleanField(default=False)
    # The lease's price, as the exact fraction payment / (GPUs x seconds) that charges are taken from.
    lease_payment_cents = models.BigIntegerField()
    lease_gpu_seconds = models.BigIntegerField()
    charge_cents = models.BigIntegerField()
    credit_cents = models.BigIntegerField(default=0)
    fee_cents = models.BigIntegerField(default=0)
    transaction = models.OneToOneField(
        LedgerTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="statement"
    )
    invoice = models.ForeignKey(
        "billing.Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="statements"
    )
    stripe_invoice_item_id = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-day", "lease_id", "seq"]
        indexes = [models.Index(fields=["team", "invoice"]), models.Index(fields=["day"])]
        constraints = [
            models.UniqueConstraint(
                fields=["lease", "period_start", "seq"], name="statement_once_per_lease_period_seq"
            ),
            models.CheckConstraint(
                condition=(Q(kind=StatementKind.REGULAR) & Q(seq=0))
                | (Q(kind=StatementKind.ADJUSTMENT) & Q(seq__gt=0)),
                name="statement_kind_matches_seq",
            ),
            models.CheckConstraint(
                condition=Q(window_start__lt=F("window_end")), name="statement_window_ordered"
            ),
            models.CheckConstraint(
                condition=Q(delivered_gpu_seconds__gte=0)
                & Q(delivered_gpu_seconds__lte=F("leased_gpu_seconds")),
                name="statement_delivered_within_leased",
            ),
        ]

    def __str__(self) -> str:
        return f"statement {self.pk}: lease {self.lease_id} {self.day} #{self.seq}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # A statement made with only its day covers the whole UTC day (the default period).
        if self.period_start is None and self.day is not None:
            self.period_start = dt.datetime.combine(self.day, dt.time(), tzinfo=dt.UTC)
        super().save(*args, **kwargs)

    @property
    def net_cents(self) -> int:
        """What the buyer owes for this statement: the charge less its credit."""
        return self.charge_cents - self.credit_cents


class StatementPayable(models.Model):
    """One seller's share of a statement (cents after the platform fee), per lease source."""

    statement = models.ForeignKey(Statement, on_delete=models.PROTECT, related_name="payables")
    source = models.ForeignKey("auctions.LeaseSource", on_delete=models.PROTECT, related_name="+")
    seller = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="statement_payables")
    payable_cents = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["statement", "source"], name="statementpayable_unique")
        ]

    def __str__(self) -> str:
        return f"{self.payable_cents} to team {self.seller_id} on statement {self.statement_id}"


# --- Stripe ----------------------------------------------------------------------------------------


class BillingCustomer(models.Model):
    """A buying team's Stripe customer and whether it has a payment method set up."""

    team = models.OneToOneField(Team, on_delete=models.PROTECT, related_name="billing_customer")
    stripe_customer_id = models.CharField(max_length=255, unique=True)
    has_payment_method = models.BooleanField(default=False)
    setup_session_id = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.stripe_customer_id} for team {self.team_id}"


class SellerAccount(models.Model):
    """A selling team's Stripe Connect Express account and its onboarding state."""

    team = models.OneToOneField(Team, on_delete=models.PROTECT, related_name="seller_account")
    stripe_account_id = models.CharField(max_length=255, unique=True)
    details_submitted = models.BooleanField(default=False)
    payouts_enabled = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.stripe_account_id} for team {self.team_id}"


class InvoiceStatus(models.TextChoices):
    # Recovery points of the resumable invoice flow, in order; each Stripe call is its own phase.
    PENDING = "pending", "Pending"
    CREATED = "created", "Created in Stripe"
    ITEMIZED = "itemized", "Items added"
    FINALIZED = "finalized", "Finalised"
    PAID = "paid", "Paid"
    FAILED = "failed", "Payment failed"
    EMPTY = "empty", "Nothing to charge"


class Invoice(models.Model):
    """One team's invoice for one billing period [period_start, period_end) in one currency."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="invoices")
    currency = models.CharField(max_length=3)
    # UTC instants: midnights for daily and weekly invoices, any period boundary for "statement".
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    status = models.CharField(max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.PENDING)
    amount_cents = models.BigIntegerField(default=0)
    stripe_invoice_id = models.CharField(max_length=255, blank=True, default="")
    stripe_charge_id = models.CharField(max_length=255, blank=True, default="")
    attempt_count = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True, default="")
    failed_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-period_start", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "currency", "period_start"], name="invoice_once_per_team_period"
            ),
            models.CheckConstraint(
                condition=Q(period_start__lt=F("period_end")), name="invoice_period_ordered"
            ),
            models.CheckConstraint(condition=Q(status__in=InvoiceStatus.values), name="invoice_status_valid"),
        ]

    def __str__(self) -> str:
        return f"invoice {self.pk} team {self.team_id} {self.period_start} ({self.status})"


class PayoutStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Transfer created"
    PAID = "paid", "Paid"
    FAILED = "failed", "Failed"
    REVERSED = "reversed", "Reversed"
    HELD = "held", "Held (seller not onboarded)"


class Payout(models.Model):
    """One transfer to one seller for its share of one paid invoice; idempotent by this row's id."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payouts")
    seller = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="payouts")
    amount_cents = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=PayoutStatus.choices, default=PayoutStatus.PENDING)
    stripe_transfer_id = models.CharField(max_length=255, blank=True, default="")
    transaction = models.OneToOneField(
        LedgerTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="payout"
    )
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "seller"], name="payout_once_per_invoice_seller"),
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="payout_positive"),
        ]

    def __str__(self) -> str:
        return f"payout {self.pk} of {self.amount_cents} to team {self.seller_id} ({self.status})"


class EventStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSED = "processed", "Processed"
    IGNORED = "ignored", "Ignored"
    FAILED = "failed", "Failed"


class StripeEvent(models.Model):
    """A verified Stripe webhook event, stored once by its Stripe id and handled by a task."""

    stripe_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=EventStatus.choices, default=EventStatus.RECEIVED)
    error = models.CharField(max_length=500, blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.type} {self.stripe_id} ({self.status})"


class BillingStanding(models.Model):
    """A buying team's payment standing: since when a payment has been failing, and the warning."""

    team = models.OneToOneField(Team, on_delete=models.PROTECT, related_name="billing_standing")
    failing_since = models.DateTimeField(null=True, blank=True)
    warned_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"team {self.team_id} failing since {self.failing_since}"


# --- The console -----------------------------------------------------------------------------------


class AdjustmentKind(models.TextChoices):
    CREDIT = "credit", "Credit (credit note)"
    REFUND = "refund", "Refund"


class AdjustmentStatus(models.TextChoices):
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting a second approval"
    APPROVED = "approved", "Approved"
    APPLIED = "applied", "Applied"
    REJECTED = "rejected", "Rejected"


class Adjustment(models.Model):
    """A staff credit or refund on a paid or open invoice, with its reason and approvals."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="adjustments")
    kind = models.CharField(max_length=8, choices=AdjustmentKind.choices)
    amount_cents = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.TextField()
    status = models.CharField(max_length=20, choices=AdjustmentStatus.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="adjustments_requested"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="adjustments_approved",
    )
    transaction = models.OneToOneField(
        LedgerTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="adjustment"
    )
    stripe_object_id = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="adjustment_positive"),
            models.CheckConstraint(condition=~Q(reason=""), name="adjustment_reason_required"),
            # The second approver is never the requester.
            models.CheckConstraint(
                condition=Q(approved_by__isnull=True) | ~Q(approved_by=F("requested_by")),
                name="adjustment_four_eyes",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} of {self.amount_cents} on invoice {self.invoice_id} ({self.status})"


class AuditEntry(models.Model):
    """One staff action in the console, kept forever."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64, blank=True, default="")
    object_id = models.CharField(max_length=64, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor_id} at {self.at:%Y-%m-%d %H:%M}"


class StaffTotp(models.Model):
    """A staff member's TOTP device; the secret is stored encrypted with a key derived from SECRET_KEY."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    secret_encrypted = models.TextField()
    confirmed = models.BooleanField(default=False)
    # The last time step accepted: a code is never accepted twice (replay).
    last_step = models.BigIntegerField(default=-1)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"TOTP of user {self.user_id}"
