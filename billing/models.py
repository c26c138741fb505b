"""Billing: a double-entry ledger, statements from verified delivery, Stripe objects and the console.

Money is integer cents with a currency. Postings are signed: debits positive, credits negative; the
postings of one transaction sum to zero per currency, enforced by PostgreSQL (migration 0002).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

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
TEAM_KINDS = {AccountKind.RECEIVABLE, AccountKind.PAYABLE}


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
