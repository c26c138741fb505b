"""Invoices and payouts on the Stripe stand-in: exactly once through crashes, and a whole cycle."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing import services
from billing.ledger import ledger_violations
from billing.models import (
    Account,
    AccountKind,
    Invoice,
    InvoiceStatus,
    LedgerTransaction,
    Payout,
    PayoutStatus,
    Statement,
)
from billing.selectors import team_may_bid
from billing.statements import statements_build_due
from billing.stripe_gateway import StripeGateway
from tests.billing.conftest import DAY1, H, deliver, make_deal

AFTER_GRACE = DAY1 + dt.timedelta(days=1, hours=1)


class Crash(Exception):
    """The process died right after a Stripe call returned, before it recorded anything."""


def balance(team, kind: str) -> int:
    account = Account.objects.filter(team=team, kind=kind).first()
    return account.normal_balance_cents if account else 0


def save_card(stripe_standin, team, card: str = "ok") -> None:
    """The buyer's owner goes through Checkout in setup mode and saves a card."""
    url = services.payment_setup_start(team=team, success_url="http://x/ok", cancel_url="http://x/no")
    stripe_standin.act(url, card=card)


def ready(stripe_standin, deal, *, card: str = "ok", buyer: bool = True):
    """The buyer saved a card through Checkout; every seller finished Express onboarding."""
    if buyer:
        save_card(stripe_standin, deal.buyer, card)
    for seller in deal.sellers:
        link = services.seller_onboarding_link(team=seller, refresh_url="http://x/r", return_url="http://x/b")
        stripe_standin.act(link)
        account = services.seller_account_ensure(team=seller)
        services.seller_account_sync(
            stripe_account_id=account.stripe_account_id, details_submitted=True, payouts_enabled=True
        )


@pytest.fixture
def stated(db, settings):
    settings.BILLING_FEE_BPS = 1000
    settings.BILLING_PERIOD = "daily"
    deal = make_deal(start=DAY1 + 2 * H, hours=10, payment_cents=12_345, seller_gpus=(1, 2))
    deliver(deal.gpus, DAY1 + 2 * H, DAY1 + 11 * H)  # 90% delivered: a credit too
    statements_build_due(now=AFTER_GRACE)
    return deal


def crash_after(monkeypatch, method: str, nth: int) -> None:
    """Make the nth call of a gateway method succeed at Stripe and then crash."""
    original = getattr(StripeGateway, method)
    calls = {"n": 0}

    def wrapped(self, **kwargs):
        result = original(self, **kwargs)
        calls["n"] += 1
        if calls["n"] == nth:
            raise Crash(method)
        return result

    monkeypatch.setattr(StripeGateway, method, wrapped)


INVOICE_STEPS = [
    ("customer_create", 1),
    ("invoice_create", 1),
    ("invoice_item_add", 1),
    ("invoice_finalize", 1),
    ("invoice_pay", 1),
    ("transfer_create", 1),
    ("transfer_create", 2),
]


@pytest.mark.parametrize(("method", "nth"), INVOICE_STEPS)
def test_a_crash_after_any_stripe_call_then_a_retry_leaves_one_stripe_object_and_one_entry_each(
    stripe_standin, stated, monkeypatch, method, nth
):
    # Crashing in customer creation means the card is saved only afterwards, on the same customer.
    ready(stripe_standin, stated, buyer=method != "customer_create")

    def cycle() -> None:
        services.invoices_open_due(now=AFTER_GRACE)
        for invoice_id in Invoice.objects.values_list("pk", flat=True):
            services.invoice_advance(invoice_id=invoice_id)
        services.payouts_run()

    with monkeypatch.context() as patch:
        crash_after(patch, method, nth)
        with pytest.raises(Crash):
            cycle()
    if method == "customer_create":
        save_card(stripe_standin, stated.buyer)
    cycle()
    cycle()

    invoice = Invoice.objects.get()
    assert invoice.status == InvoiceStatus.PAID
    assert len(stripe_standin.objects("customer")) == 1
    assert len(stripe_standin.objects("invoice")) == 1
    assert (
        len(stripe_standin.objects("invoiceitem")) == Statement.objects.exclude(charge_cents=0).count() == 1
    )
    assert len(stripe_standin.objects("charge")) == 1
    assert (
        len(stripe_standin.objects("transfer"))
        == 2
        == Payout.objects.filter(status=PayoutStatus.SENT).count()
    )
    assert LedgerTransaction.objects.filter(idempotency_key=f"invoice:{invoice.pk}:paid").count() == 1
    assert LedgerTransaction.objects.filter(idempotency_key__startswith="payout:").count() == 2
    assert ledger_violations() == []


def test_a_declined_card_warns_the_team_and_after_the_grace_days_it_cannot_bid_until_it_pays(
    stripe_standin, stated, settings
):
    settings.BILLING_SUSPEND_AFTER_DAYS = 3
    ready(stripe_standin, stated, card="declined")
    [invoice_id] = services.invoices_open_due(now=AFTER_GRACE)
    invoice = services.invoice_advance(invoice_id=invoice_id)
    assert invoice.status == InvoiceStatus.FAILED
    assert stated.buyer.notifications.filter(event="billing.payment_failed").count() == 1
    now = invoice.failed_at
    assert team_may_bid(stated.buyer, now=now + dt.timedelta(days=2))
    assert not team_may_bid(stated.buyer, now=now + dt.timedelta(days=3))
    assert Payout.objects.count() == 0

    save_card(stripe_standin, stated.buyer)
    assert services.invoice_retry(invoice_id=invoice_id).status == InvoiceStatus.PAID
    assert team_may_bid(stated.buyer, now=now + dt.timedelta(days=30))
    assert len(stripe_standin.objects("charge")) == 1


def test_a_seller_without_onboarding_is_held_and_paid_once_onboarded(stripe_standin, stated):
    save_card(stripe_standin, stated.buyer)
    [invoice_id] = services.invoices_open_due(now=AFTER_GRACE)
    services.invoice_advance(invoice_id=invoice_id)
    services.payouts_run()
    assert set(Payout.objects.values_list("status", flat=True)) == {PayoutStatus.HELD}
    assert stripe_standin.objects("transfer") == []
    ready(stripe_standin, stated, buyer=False)
    services.payouts_run()
    assert set(Payout.objects.values_list("status", flat=True)) == {PayoutStatus.SENT}
    for seller in stated.sellers:
        assert balance(seller, AccountKind.PAYABLE) == 0


def test_reconcile_agrees_after_a_clean_cycle_and_reports_a_transfer_stripe_does_not_match(
    stripe_standin, stated, capsys
):
    ready(stripe_standin, stated)
    [invoice_id] = services.invoices_open_due(now=AFTER_GRACE)
    services.invoice_advance(invoice_id=invoice_id)
    services.payouts_run()
    call_command("billing_reconcile")
    assert "agree" in capsys.readouterr().out
    payout = Payout.objects.first()
    stripe_standin.server.state.objects[payout.stripe_transfer_id]["amount"] += 1
    with pytest.raises(CommandError) as excinfo:
        call_command("billing_reconcile")
    assert excinfo.value.returncode == 1
    assert f"payout {payout.pk}: transfer of" in capsys.readouterr().err
    assert Payout.objects.get(pk=payout.pk).amount_cents == payout.amount_cents
