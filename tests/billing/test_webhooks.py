"""Stripe webhooks: verified, stored once by event id, handled in any order; and a whole cycle."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from django.db.models import Sum

from auctions import services as auctions
from auctions.models import Lease
from billing import services
from billing.ledger import ledger_violations
from billing.models import (
    Account,
    AccountKind,
    EventStatus,
    Invoice,
    InvoiceStatus,
    LedgerTransaction,
    Statement,
    StatementPayable,
    StripeEvent,
)
from billing.statements import statements_build_due
from billing.stripe_standin.server import sign
from config.celery import app
from tests.auctions.conftest import CUTOFF, clock, live_market  # noqa: F401 (fixtures)
from tests.billing.conftest import DAY1, WEBHOOK_SECRET, deliver, make_deal
from tests.billing.test_stripe_flows import AFTER_GRACE, ready

URL = "/billing/stripe/webhook"


@pytest.fixture
def eager(monkeypatch):
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


def post(client, body: bytes, signature: str):
    return client.post(URL, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)


def deliver_all(client, stripe_standin, captured, *, order=lambda xs: xs, times: int = 1):
    for body, signature in order(list(stripe_standin.sent)) * times:
        with captured(execute=True):
            assert post(client, body, signature).status_code == 200
    stripe_standin.sent.clear()


@pytest.fixture
def paid_flow(db, settings, stripe_standin, eager):
    settings.BILLING_FEE_BPS = 1000
    deal = make_deal(start=DAY1, hours=24, payment_cents=4800, seller_gpus=(1,))
    deliver(deal.gpus, DAY1, DAY1 + dt.timedelta(hours=24))
    statements_build_due(now=AFTER_GRACE)
    ready(stripe_standin, deal)
    stripe_standin.sent.clear()
    [invoice_id] = services.invoices_open_due(now=AFTER_GRACE)
    services.invoice_advance(invoice_id=invoice_id)
    return deal


def test_a_valid_webhook_is_stored_and_handled(
    client, stripe_standin, paid_flow, django_capture_on_commit_callbacks
):
    paid = stripe_standin.events("invoice.paid")[0]
    deliver_all(client, stripe_standin, django_capture_on_commit_callbacks)
    row = StripeEvent.objects.get(stripe_id=paid["id"])
    assert row.status == EventStatus.PROCESSED
    assert Invoice.objects.get().status == InvoiceStatus.PAID


@pytest.mark.parametrize("tamper", ["altered", "wrong_secret", "stale", "unsigned"])
def test_a_webhook_that_does_not_verify_is_refused_and_not_stored(client, stripe_standin, paid_flow, tamper):
    body, signature = stripe_standin.sent[0]
    if tamper == "altered":
        body = body.replace(b'"livemode": false', b'"livemode": true ')
    elif tamper == "wrong_secret":
        signature = sign(body, "whsec_someone_else")
    elif tamper == "stale":
        signature = sign(body, WEBHOOK_SECRET, int(time.time()) - 301)
    else:
        signature = ""
    assert post(client, body, signature).status_code == 400
    assert StripeEvent.objects.count() == 0


def test_each_event_delivered_ten_times_in_reverse_order_has_one_effect(
    client, stripe_standin, paid_flow, django_capture_on_commit_callbacks
):
    sent = len(stripe_standin.sent)
    deliver_all(
        client, stripe_standin, django_capture_on_commit_callbacks, order=lambda xs: xs[::-1], times=10
    )
    assert StripeEvent.objects.count() == sent
    invoice = Invoice.objects.get()
    assert invoice.status == InvoiceStatus.PAID
    assert LedgerTransaction.objects.filter(idempotency_key=f"invoice:{invoice.pk}:paid").count() == 1


def test_a_payment_failure_arriving_after_the_payment_does_not_undo_it(
    client, stripe_standin, paid_flow, django_capture_on_commit_callbacks
):
    invoice = Invoice.objects.get()
    failed = {
        "id": "evt_late_failure",
        "object": "event",
        "type": "invoice.payment_failed",
        "created": int(time.time()),
        "data": {"object": {"id": invoice.stripe_invoice_id, "object": "invoice"}},
    }
    body = json.dumps(failed).encode()
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, body, sign(body, WEBHOOK_SECRET)).status_code == 200
    assert Invoice.objects.get().status == InvoiceStatus.PAID
    assert not paid_flow.buyer.notifications.filter(event="billing.payment_failed").exists()


def test_a_whole_cycle_from_round_to_seller_transfer_balances_to_the_cent(
    live_market,  # noqa: F811
    clock,  # noqa: F811
    settings,
    client,
    stripe_standin,
    eager,
    django_capture_on_commit_callbacks,
):
    settings.BILLING_FEE_BPS = 750
    clock.move_to(CUTOFF + dt.timedelta(seconds=5))
    assert auctions.round_close_due()["closed"] == live_market.round.number
    assert auctions.round_clear(round_id=live_market.round.pk) == "cleared"
    lease = Lease.objects.get()
    gpus = [lg.gpu for lg in lease.lease_gpus.select_related("gpu")]
    # The seller delivers 3.5 of the 4 hours: 87.5%, below the SLA, so the buyer is credited too.
    deliver(gpus, lease.start, lease.end - dt.timedelta(minutes=30))
    after = dt.datetime.combine(lease.end.date() + dt.timedelta(days=1), dt.time(2), tzinfo=dt.UTC)
    clock.move_to(after)
    statements_build_due(now=after)
    buyer, seller = lease.team, lease.sources.get().offer.cluster.team

    class Deal:
        pass

    deal = Deal()
    deal.buyer, deal.sellers = buyer, [seller]
    ready(stripe_standin, deal)
    for invoice_id in services.invoices_open_due(now=after):
        services.invoice_advance(invoice_id=invoice_id)
    deliver_all(client, stripe_standin, django_capture_on_commit_callbacks, order=lambda xs: xs[::-1])
    services.payouts_run()

    totals = Statement.objects.aggregate(c=Sum("charge_cents"), r=Sum("credit_cents"), f=Sum("fee_cents"))
    payables = StatementPayable.objects.aggregate(p=Sum("payable_cents"))["p"]
    charges, credits, fees = totals["c"], totals["r"], totals["f"]
    assert credits > 0
    [invoice] = stripe_standin.objects("invoice")
    transfers = stripe_standin.objects("transfer")
    assert invoice["status"] == "paid" and invoice["amount_paid"] == charges - credits
    assert sum(t["amount"] for t in transfers) == payables
    assert charges - credits == payables + fees - credits
    [charge] = stripe_standin.objects("charge")
    assert {t["source_transaction"] for t in transfers} == {charge["id"]}
    platform = {a.kind: a.normal_balance_cents for a in Account.objects.filter(team__isnull=True)}
    assert platform[AccountKind.CLEARING] == fees - credits
    assert platform[AccountKind.FEES] == fees and platform[AccountKind.CREDITS] == credits
    for account in Account.objects.filter(team__isnull=False):
        assert account.balance_cents == 0
    assert ledger_violations() == []
