"""Seller clawback (BILLING_SELLER_CLAWBACK): a buyer's under-delivery credit is taken back from the
sellers who served the lease, once, when the invoice is paid; it shows on their earnings page."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from billing import services
from billing.ledger import ledger_violations
from billing.models import (
    Account,
    AccountKind,
    LedgerTransaction,
    Payout,
    Posting,
    Statement,
    StatementPayable,
)
from billing.money import split_by_weights
from tests.billing.test_stripe_flows import AFTER_GRACE, balance, ready, stated  # noqa: F401 (fixture)
from tests.billing.test_web import member


def pay(stripe_standin, deal):
    ready(stripe_standin, deal)
    [invoice_id] = services.invoices_open_due(now=AFTER_GRACE)
    invoice = services.invoice_advance(invoice_id=invoice_id)
    services.payouts_run()
    return invoice


@pytest.fixture
def clawback_on(settings):
    settings.BILLING_SELLER_CLAWBACK = True


def test_the_credit_moves_from_the_platform_to_the_sellers_once(
    clawback_on,
    stripe_standin,
    stated,  # noqa: F811
):
    invoice = pay(stripe_standin, stated)
    statement = Statement.objects.get(invoice=invoice)
    assert statement.credit_cents > 0
    tx = LedgerTransaction.objects.get(idempotency_key=f"clawback:stmt:{statement.pk}")
    taken = {
        p.account.team_id: p.amount_cents
        for p in Posting.objects.filter(transaction=tx, account__kind=AccountKind.PAYABLE).select_related(
            "account"
        )
    }
    sources = list(stated.lease.sources.order_by("pk"))
    expected = split_by_weights(statement.credit_cents, [s.revenue_cents for s in sources])
    assert taken == {s.offer.cluster.team_id: c for s, c in zip(sources, expected, strict=True)}
    assert sum(taken.values()) == statement.credit_cents

    # Each seller is paid its share less what was taken back; nobody is owed anything after.
    for seller in stated.sellers:
        share = sum(StatementPayable.objects.filter(seller=seller).values_list("payable_cents", flat=True))
        assert Payout.objects.get(seller=seller).amount_cents == share - taken[seller.pk]
        assert balance(seller, AccountKind.PAYABLE) == 0
    # The platform no longer funds the credit: it keeps exactly its fees.
    fees = statement.fee_cents
    assert balance(None, AccountKind.CREDITS) == 0
    clearing = Account.objects.get(kind=AccountKind.CLEARING).normal_balance_cents
    assert clearing == fees

    # A duplicated "invoice paid" (webhook after the direct answer) posts nothing new.
    before = LedgerTransaction.objects.count()
    services.invoice_mark_paid(
        stripe_invoice_id=invoice.stripe_invoice_id, charge_id=invoice.stripe_charge_id
    )
    assert LedgerTransaction.objects.count() == before
    assert ledger_violations() == []
    call_command("ledger_check")  # exits non-zero on any violation


def test_the_seller_sees_what_was_taken_back(client, clawback_on, stripe_standin, stated):  # noqa: F811
    pay(stripe_standin, stated)
    seller = stated.sellers[1]
    posting = Posting.objects.get(
        account__team=seller, transaction__idempotency_key__startswith="clawback:stmt:"
    )
    client.force_login(member(seller))
    page = client.get("/billing/earnings/").content.decode()
    cents = posting.amount_cents
    assert "Clawbacks" in page and f"${cents // 100}.{cents % 100:02d}" in page
    assert f"lease {stated.lease.pk}" in page


def test_off_by_default_the_platform_funds_the_credit(client, stripe_standin, stated):  # noqa: F811
    pay(stripe_standin, stated)
    assert not LedgerTransaction.objects.filter(idempotency_key__startswith="clawback:").exists()
    credit = Statement.objects.get().credit_cents
    assert Account.objects.get(kind=AccountKind.CREDITS).normal_balance_cents == credit
    client.force_login(member(stated.sellers[0]))
    assert "funded by the platform" in client.get("/billing/earnings/").content.decode()
