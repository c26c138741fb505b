"""The double-entry ledger: accounts, balanced idempotent postings, reversals and invariant checks.

Every write goes through `ledger_post`, which locks the accounts it touches in id order (so two
posters never deadlock), refuses unbalanced or overdrawing transactions, and returns the first
transaction again when called twice with the same idempotency key and the same legs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Q, Sum

from marketplace.errors import Conflict, IdempotencyConflict, InvalidInput
from marketplace.models import Team

from .models import ACCOUNT_RULES, Account, AccountKind, LedgerTransaction, Posting, TransactionKind


@dataclass(frozen=True)
class Leg:
    """One intended posting: signed cents (debit > 0, credit < 0) on an account."""

    account: Account
    amount_cents: int


def _account(code: str, kind: str, currency: str, team: Team | None) -> Account:
    normal, overdraft = ACCOUNT_RULES[kind]
    account, _ = Account.objects.get_or_create(
        code=code,
        defaults={
            "kind": kind,
            "team": team,
            "currency": currency,
            "normal": normal,
            "allow_overdraft": overdraft,
        },
    )
    return account


def team_account(*, team: Team, kind: str, currency: str) -> Account:
    """The team's receivable or payable account in `currency`, created on first use."""
    if kind not in (AccountKind.RECEIVABLE, AccountKind.PAYABLE):
        raise ValueError(f"{kind} is not a team account kind")
    return _account(f"team:{team.pk}:{kind}:{currency}", kind, currency, team)


def platform_account(*, kind: str, currency: str) -> Account:
    """The platform's fees, Stripe clearing or credits account in `currency`."""
    if kind not in (AccountKind.FEES, AccountKind.CLEARING, AccountKind.CREDITS):
        raise ValueError(f"{kind} is not a platform account kind")
    return _account(f"platform:{kind}:{currency}", kind, currency, None)


def _normalised(legs: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Legs merged per account and sorted, so the same intent compares equal however it was listed."""
    merged: dict[int, int] = defaultdict(int)
    for account_id, cents in legs:
        merged[account_id] += cents
    return sorted((a, c) for a, c in merged.items() if c != 0)


def _validate(legs: Sequence[Leg]) -> None:
    if len(legs) < 2:
        raise InvalidInput.one("legs", "too_few", "a transaction needs at least two postings")
    totals: dict[str, int] = defaultdict(int)
    for i, leg in enumerate(legs):
        if leg.amount_cents == 0:
            raise InvalidInput.one(f"legs[{i}].amount_cents", "zero", "a posting must not be zero")
        totals[leg.account.currency] += leg.amount_cents
    for currency, total in totals.items():
        if total != 0:
            raise InvalidInput.one(
                "legs", "unbalanced", f"postings in {currency} sum to {total}; they must sum to zero"
            )


def _existing(key: str, legs: Sequence[Leg]) -> LedgerTransaction | None:
    found = LedgerTransaction.objects.filter(idempotency_key=key).first()
    if found is None:
        return None
    stored = _normalised(list(found.postings.values_list("account_id", "amount_cents")))
    wanted = _normalised([(leg.account.pk, leg.amount_cents) for leg in legs])
    if stored != wanted:
        raise IdempotencyConflict(key)
    return found


def ledger_post(
    *,
    key: str,
    kind: str,
    legs: Sequence[Leg],
    memo: str = "",
    reverses: LedgerTransaction | None = None,
) -> LedgerTransaction:
    """Post a balanced transaction once per `key`; the same key and legs return the first one."""
    legs = [leg for leg in legs if leg.amount_cents != 0]
    _validate(legs)
    try:
        with transaction.atomic():
            if (found := _existing(key, legs)) is not None:
                return found
            deltas: dict[int, int] = defaultdict(int)
            for leg in legs:
                deltas[leg.account.pk] += leg.amount_cents
            list(Account.objects.select_for_update().filter(pk__in=deltas).order_by("pk"))
            tx = LedgerTransaction.objects.create(
                idempotency_key=key, kind=kind, memo=memo[:500], reverses=reverses
            )
            Posting.objects.bulk_create(
                Posting(
                    transaction=tx,
                    account=leg.account,
                    amount_cents=leg.amount_cents,
                    currency=leg.account.currency,
                )
                for leg in legs
            )
            for account_id in sorted(deltas):
                Account.objects.filter(pk=account_id).update(
                    balance_cents=F("balance_cents") + deltas[account_id]
                )
            return tx
    except IntegrityError as exc:
        if "account_no_overdraft" in str(exc):
            raise Conflict(
                f"transaction {key!r} would take an account without overdraft below zero",
                code="overdraft",
            ) from exc
        # Another poster won the race for this key: answer as if we had come second.
        if (found := _existing(key, legs)) is not None:
            return found
        raise


def ledger_reverse(*, transaction_id: int, memo: str) -> LedgerTransaction:
    """Post the exact opposite of a transaction (its correction); a transaction is reversed once."""
    original = LedgerTransaction.objects.filter(pk=transaction_id).first()
    if original is None:
        raise InvalidInput.one("transaction_id", "unknown", f"no ledger transaction {transaction_id}")
    if original.kind == TransactionKind.REVERSAL:
        raise Conflict("a reversal cannot itself be reversed; post a new transaction", code="is_reversal")
    legs = [Leg(p.account, -p.amount_cents) for p in original.postings.select_related("account")]
    return ledger_post(
        key=f"reversal:{original.pk}",
        kind=TransactionKind.REVERSAL,
        legs=legs,
        memo=memo,
        reverses=original,
    )


def force_deferred_checks() -> None:
    """Run PostgreSQL's deferred ledger triggers now instead of at commit (tests, checks)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def ledger_violations() -> list[str]:
    """Every broken ledger invariant, in words; an empty list means the ledger is sound."""
    problems: list[str] = []
    unbalanced = (
        Posting.objects.values("transaction_id", "currency")
        .annotate(total=Sum("amount_cents"))
        .exclude(total=0)
        .order_by("transaction_id")
    )
    for row in unbalanced:
        problems.append(
            f"transaction {row['transaction_id']} sums to {row['total']} {row['currency']}, not zero"
        )
    for tx_id in (
        LedgerTransaction.objects.annotate(n=Count("postings")).filter(n__lt=2).values_list("pk", flat=True)
    ):
        problems.append(f"transaction {tx_id} has fewer than two postings")
    for posting_id, account_code in Posting.objects.exclude(currency=F("account__currency")).values_list(
        "pk", "account__code"
    ):
        problems.append(f"posting {posting_id} has another currency than its account {account_code}")
    for account in Account.objects.annotate(posted=Sum("postings__amount_cents")).order_by("pk"):
        posted = account.posted or 0
        if posted != account.balance_cents:
            problems.append(
                f"account {account.code} balance {account.balance_cents} differs from its postings {posted}"
            )
        if not account.allow_overdraft and account.normal_balance_cents < 0:
            problems.append(f"account {account.code} is below zero ({account.normal_balance_cents})")
    for tx_id in LedgerTransaction.objects.filter(
        Q(kind=TransactionKind.REVERSAL) & Q(reverses__isnull=True)
    ).values_list("pk", flat=True):
        problems.append(f"reversal {tx_id} names no transaction it reverses")
    return problems
