"""A Hypothesis state machine over the ledger against a plain Python model of every balance.

CI runs 15 x 40 steps to stay fast; LEDGER_MACHINE_EXAMPLES=1000 LEDGER_MACHINE_STEPS=200 runs the
long version (docs/billing.md).
"""

from __future__ import annotations

import os

import pytest
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from billing.ledger import (
    Leg,
    force_deferred_checks,
    ledger_post,
    ledger_reverse,
    ledger_violations,
    platform_account,
    team_account,
)
from billing.models import Account, AccountKind, LedgerTransaction, Posting, TransactionKind
from marketplace.errors import Conflict, IdempotencyConflict
from tests.factories import TeamFactory

cents = st.integers(min_value=1, max_value=500_000)


class LedgerMachine(RuleBasedStateMachine):
    """Charges, fees, credits, payments, refunds, payouts and reversals in any order."""

    def __init__(self) -> None:
        super().__init__()
        # Each run works inside a savepoint that teardown rolls back, so runs never see each other.
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        buyers = [TeamFactory() for _ in range(2)]
        sellers = [TeamFactory() for _ in range(2)]
        self.receivables = [team_account(team=t, kind=AccountKind.RECEIVABLE, currency="usd") for t in buyers]
        self.payables = [team_account(team=t, kind=AccountKind.PAYABLE, currency="usd") for t in sellers]
        self.fees = platform_account(kind=AccountKind.FEES, currency="usd")
        self.clearing = platform_account(kind=AccountKind.CLEARING, currency="usd")
        self.credits = platform_account(kind=AccountKind.CREDITS, currency="usd")
        self.model: dict[int, int] = {}  # account id -> signed balance (debit > 0)
        self.legs_of: dict[str, list[tuple[int, int]]] = {}
        self.reversed: set[str] = set()
        self.n = 0

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    def _key(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}:{self.n}"

    def _would_overdraw(self, legs: list[Leg]) -> bool:
        after = dict(self.model)
        for leg in legs:
            after[leg.account.pk] = after.get(leg.account.pk, 0) + leg.amount_cents
        for leg in legs:
            acc = leg.account
            normal = after[acc.pk] if acc.normal == "debit" else -after[acc.pk]
            if not acc.allow_overdraft and normal < 0:
                return True
        return False

    def _post(self, key: str, kind: str, legs: list[Leg]) -> None:
        legs = [leg for leg in legs if leg.amount_cents]
        if self._would_overdraw(legs):
            with pytest.raises(Conflict):
                ledger_post(key=key, kind=kind, legs=legs)
            return
        ledger_post(key=key, kind=kind, legs=legs)
        for leg in legs:
            self.model[leg.account.pk] = self.model.get(leg.account.pk, 0) + leg.amount_cents
        self.legs_of[key] = [(leg.account.pk, leg.amount_cents) for leg in legs]

    def _balance(self, account: Account) -> int:
        v = self.model.get(account.pk, 0)
        return v if account.normal == "debit" else -v

    @rule(buyer=st.integers(0, 1), seller=st.integers(0, 1), amount=cents, fee_bps=st.integers(0, 3000))
    def charge(self, buyer: int, seller: int, amount: int, fee_bps: int) -> None:
        fee = amount * fee_bps // 10_000
        legs = [
            Leg(self.receivables[buyer], amount),
            Leg(self.fees, -fee),
            Leg(self.payables[seller], fee - amount),
        ]
        self._post(self._key("stmt"), TransactionKind.STATEMENT, legs)

    @rule(buyer=st.integers(0, 1), amount=cents)
    def credit(self, buyer: int, amount: int) -> None:
        legs = [Leg(self.credits, amount), Leg(self.receivables[buyer], -amount)]
        self._post(self._key("credit"), TransactionKind.CREDIT, legs)

    @rule(buyer=st.integers(0, 1))
    def payment(self, buyer: int) -> None:
        owed = self._balance(self.receivables[buyer])
        if owed > 0:
            legs = [Leg(self.clearing, owed), Leg(self.receivables[buyer], -owed)]
            self._post(self._key("invoice"), TransactionKind.PAYMENT, legs)

    @rule(amount=cents)
    def refund(self, amount: int) -> None:
        legs = [Leg(self.credits, amount), Leg(self.clearing, -amount)]
        self._post(self._key("refund"), TransactionKind.REFUND, legs)

    @rule(seller=st.integers(0, 1), share=st.integers(1, 100))
    def payout(self, seller: int, share: int) -> None:
        due = self._balance(self.payables[seller])
        amount = due * share // 100
        if amount > 0:
            legs = [Leg(self.payables[seller], amount), Leg(self.clearing, -amount)]
            self._post(self._key("payout"), TransactionKind.PAYOUT, legs)

    @rule(amount=cents)
    def fee_refund_beyond_what_was_earned(self, amount: int) -> None:
        legs = [
            Leg(self.fees, self._balance(self.fees) + amount),
            Leg(self.clearing, -(self._balance(self.fees) + amount)),
        ]
        self._post(self._key("fee-back"), TransactionKind.OTHER, legs)

    @rule(data=st.data())
    def reversal(self, data: st.DataObject) -> None:
        candidates = sorted(
            k for k in self.legs_of if k not in self.reversed and not k.startswith("reversal:")
        )
        if not candidates:
            return
        key = data.draw(st.sampled_from(candidates))
        tx = LedgerTransaction.objects.get(idempotency_key=key)
        legs = [Leg(Account.objects.get(pk=a), -c) for a, c in self.legs_of[key]]
        if self._would_overdraw(legs):
            with pytest.raises(Conflict):
                ledger_reverse(transaction_id=tx.pk, memo="test")
            return
        ledger_reverse(transaction_id=tx.pk, memo="test")
        self.reversed.add(key)
        for a, c in self.legs_of[key]:
            self.model[a] -= c
        self.legs_of[f"reversal:{tx.pk}"] = [(a, -c) for a, c in self.legs_of[key]]

    @rule(data=st.data(), bump=st.integers(1, 99))
    def retried_post(self, data: st.DataObject, bump: int) -> None:
        """A task posting again under a used key: same legs change nothing, other legs are refused."""
        keys = sorted(k for k in self.legs_of if not k.startswith("reversal:"))
        if not keys:
            return
        key = data.draw(st.sampled_from(keys))
        legs = [Leg(Account.objects.get(pk=a), c) for a, c in self.legs_of[key]]
        first = LedgerTransaction.objects.get(idempotency_key=key)
        assert ledger_post(key=key, kind=first.kind, legs=legs).pk == first.pk
        changed = [
            Leg(legs[0].account, legs[0].amount_cents + bump),
            Leg(legs[1].account, legs[1].amount_cents - bump),
            *legs[2:],
        ]
        with pytest.raises(IdempotencyConflict):
            ledger_post(key=key, kind=first.kind, legs=changed)

    @invariant()
    def every_transaction_balances_and_every_balance_equals_its_postings(self) -> None:
        force_deferred_checks()
        assert ledger_violations() == []
        for account in Account.objects.filter(pk__in=self.model):
            assert account.balance_cents == self.model[account.pk]
            if not account.allow_overdraft:
                assert account.normal_balance_cents >= 0
        assert Posting.objects.filter(transaction__idempotency_key__in=self.legs_of).count() == sum(
            len(v) for v in self.legs_of.values()
        )


@pytest.mark.django_db
def test_the_ledger_keeps_its_invariants_under_any_sequence_of_operations():
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=int(os.environ.get("LEDGER_MACHINE_EXAMPLES", "15")),
            stateful_step_count=int(os.environ.get("LEDGER_MACHINE_STEPS", "40")),
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
