"""The ledger: balanced, append-only, idempotent, enforced by PostgreSQL itself."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, IntegrityError, connection, transaction

from billing.ledger import Leg, force_deferred_checks, ledger_post, ledger_reverse, ledger_violations
from billing.models import Account, LedgerTransaction, Posting, TransactionKind
from marketplace.errors import Conflict, IdempotencyConflict, InvalidInput


def charge(books, key: str = "stmt:1", cents: int = 1000, fee: int = 100) -> LedgerTransaction:
    return ledger_post(
        key=key,
        kind=TransactionKind.STATEMENT,
        legs=[Leg(books.buyer, cents), Leg(books.seller, -(cents - fee)), Leg(books.fees, -fee)],
    )


def balance(account: Account) -> int:
    return Account.objects.get(pk=account.pk).normal_balance_cents


def raw(sql: str, params: list[object]) -> None:
    """Run SQL and then the deferred checks, as a commit would, inside a savepoint."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def test_a_statement_moves_money_from_the_buyer_to_the_seller_and_the_platform(books):
    charge(books, cents=1000, fee=100)
    assert (balance(books.buyer), balance(books.seller), balance(books.fees)) == (1000, 900, 100)
    assert ledger_violations() == []


def test_posting_twice_with_the_same_key_posts_once(books):
    first = charge(books)
    second = charge(books)
    assert first.pk == second.pk
    assert Posting.objects.count() == 3
    assert balance(books.buyer) == 1000


def test_the_same_key_with_other_amounts_is_refused_and_changes_nothing(books):
    charge(books, cents=1000)
    with pytest.raises(IdempotencyConflict):
        charge(books, cents=2000)
    assert balance(books.buyer) == 1000


def test_an_unbalanced_transaction_is_refused_by_the_service(books):
    with pytest.raises(InvalidInput, match="sum to 5"):
        ledger_post(key="x", kind="other", legs=[Leg(books.buyer, 10), Leg(books.seller, -5)])
    assert LedgerTransaction.objects.count() == 0


def test_overdrawing_the_fees_account_is_refused_and_nothing_is_stored(books):
    with pytest.raises(Conflict, match="below zero"):
        ledger_post(key="x", kind="other", legs=[Leg(books.fees, 10), Leg(books.clearing, -10)])
    assert LedgerTransaction.objects.count() == 0
    assert balance(books.fees) == 0


def test_a_reversal_restores_every_balance_and_happens_once(books):
    tx = charge(books)
    rev = ledger_reverse(transaction_id=tx.pk, memo="wrong day")
    again = ledger_reverse(transaction_id=tx.pk, memo="wrong day")
    assert rev.pk == again.pk and rev.reverses_id == tx.pk
    assert (balance(books.buyer), balance(books.seller), balance(books.fees)) == (0, 0, 0)
    with pytest.raises(Conflict):
        ledger_reverse(transaction_id=rev.pk, memo="undo")


def test_postgres_refuses_an_unbalanced_transaction_written_with_raw_sql(books):
    tx = charge(books)
    with pytest.raises(IntegrityError, match="does not balance"):
        raw(
            "INSERT INTO billing_posting (transaction_id, account_id, amount_cents, currency)"
            " VALUES (%s, %s, %s, 'usd')",
            [tx.pk, books.buyer.pk, 5],
        )


def test_postgres_refuses_a_transaction_without_postings(books):
    with pytest.raises(IntegrityError, match="fewer than two"):
        raw(
            "INSERT INTO billing_ledgertransaction (idempotency_key, kind, memo, created_at)"
            " VALUES ('bare', 'other', '', now())",
            [],
        )


def test_postgres_refuses_a_posting_in_another_currency_than_its_account(books):
    tx = charge(books)
    with pytest.raises(IntegrityError, match="currency"):
        raw(
            "INSERT INTO billing_posting (transaction_id, account_id, amount_cents, currency)"
            " VALUES (%s, %s, 5, 'eur'), (%s, %s, -5, 'eur')",
            [tx.pk, books.buyer.pk, tx.pk, books.seller.pk],
        )


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE billing_posting SET amount_cents = amount_cents * 2",
        "DELETE FROM billing_posting",
        "UPDATE billing_ledgertransaction SET memo = 'edited'",
        "DELETE FROM billing_ledgertransaction",
    ],
)
def test_postgres_refuses_to_edit_or_delete_the_journal(books, sql):
    charge(books)
    with pytest.raises(DatabaseError, match="append-only"):
        raw(sql, [])
    assert Posting.objects.count() == 3


def test_a_deferred_check_passes_for_the_service_s_own_postings(books):
    charge(books)
    force_deferred_checks()
    assert ledger_violations() == []


def test_ledger_check_exits_non_zero_when_a_cached_balance_disagrees_with_its_postings(books, capsys):
    charge(books)
    call_command("ledger_check")
    assert "ledger ok" in capsys.readouterr().out
    Account.objects.filter(pk=books.buyer.pk).update(balance_cents=7)
    with pytest.raises(CommandError) as excinfo:
        call_command("ledger_check")
    assert excinfo.value.returncode == 1
    assert "differs from its postings" in capsys.readouterr().err
