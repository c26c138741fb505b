"""The Stripe stand-in answers the real `stripe` library as Stripe would."""

from __future__ import annotations

import pytest

from billing.stripe_gateway import GatewayError, PaymentDeclined, StripeGateway


@pytest.fixture
def gw(stripe_standin) -> StripeGateway:
    return StripeGateway(api_key="sk_test_billing", api_base=stripe_standin.server.url)


def test_the_same_key_and_parameters_return_the_first_object(gw, stripe_standin):
    first = gw.customer_create(team_id=1, name="Acme", key="customer:team:1")
    assert gw.customer_create(team_id=1, name="Acme", key="customer:team:1") == first
    assert len(stripe_standin.objects("customer")) == 1


def test_the_same_key_with_other_parameters_is_an_idempotency_error(gw, stripe_standin):
    gw.customer_create(team_id=1, name="Acme", key="customer:team:1")
    with pytest.raises(GatewayError, match="same parameters"):
        gw.customer_create(team_id=2, name="Beta", key="customer:team:1")
    assert len(stripe_standin.objects("customer")) == 1


def test_a_declined_payment_is_replayed_as_the_same_error_for_the_same_key(gw, stripe_standin):
    customer = gw.customer_create(team_id=1, name="Acme", key="c")
    invoice = gw.invoice_create(customer=customer, currency="usd", invoice_id=1, key="i")
    gw.invoice_item_add(
        customer=customer,
        invoice=invoice,
        amount=500,
        currency="usd",
        description="d",
        statement_id=1,
        key="s",
    )
    gw.invoice_finalize(invoice=invoice, key="f")
    for _ in range(2):
        with pytest.raises(PaymentDeclined):
            gw.invoice_pay(invoice=invoice, key="p")
    assert gw.invoice_retrieve(invoice=invoice)["attempt_count"] == 1
    assert len(stripe_standin.events("invoice.payment_failed")) == 1


def test_objects_are_shaped_like_stripe_s_and_missing_ones_are_stripe_errors(gw, stripe_standin):
    customer = gw.customer_create(team_id=1, name="Acme", key="c")
    invoice = gw.invoice_retrieve(
        invoice=gw.invoice_create(customer=customer, currency="usd", invoice_id=1, key="i")
    )
    assert {"id", "object", "customer", "status", "lines", "amount_due", "status_transitions"} <= set(invoice)
    assert invoice["object"] == "invoice" and invoice["status"] == "draft"
    with pytest.raises(GatewayError, match="No such invoice"):
        gw.invoice_retrieve(invoice="in_missing")
