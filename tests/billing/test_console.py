"""The staff console: staff only, TOTP enforced, audited, CSV everywhere, four eyes above the limit."""

from __future__ import annotations

import csv
import io

import pytest

from billing import services, totp
from billing.models import Adjustment, AdjustmentStatus, AuditEntry, Invoice, InvoiceStatus, LedgerTransaction
from tests.billing.test_stripe_flows import AFTER_GRACE, ready, stated  # noqa: F401 (fixture)
from tests.factories import UserFactory


def staff(client, *, verified: bool = True):
    user = UserFactory(is_staff=True)
    client.force_login(user)
    if verified:
        device = totp.device_for(user)
        assert client.post("/console/otp/", {"code": totp.code_for(device)}).status_code == 302
    return user


@pytest.fixture
def paid_invoice(db, settings, stripe_standin, stated):  # noqa: F811
    settings.BILLING_APPROVAL_THRESHOLD_CENTS = 500
    ready(stripe_standin, stated)
    [invoice_id] = services.invoices_open_due(now=AFTER_GRACE)
    return services.invoice_advance(invoice_id=invoice_id)


def test_anonymous_visitors_are_sent_to_log_in_and_non_staff_find_nothing(client, db):
    assert client.get("/console/").status_code == 302
    client.force_login(UserFactory())
    assert client.get("/console/").status_code == 404
    assert client.get("/console/otp/").status_code == 404


def test_staff_without_a_verified_code_are_sent_to_the_two_factor_check(client, db):
    staff(client, verified=False)
    response = client.get("/console/invoices/")
    assert response.status_code == 302 and response["Location"].startswith("/console/otp/")
    assert client.post("/console/otp/", {"code": "000000"}).status_code == 200
    assert client.get("/console/").status_code == 302


def test_a_code_is_accepted_once(client, db):
    user = staff(client, verified=False)
    code = totp.code_for(totp.device_for(user))
    assert client.post("/console/otp/", {"code": code}).status_code == 302
    other = client.__class__()
    other.force_login(user)
    assert other.post("/console/otp/", {"code": code}).status_code == 200


def test_the_overview_and_every_list_show_and_export_as_csv(client, paid_invoice):
    staff(client)
    assert f"{paid_invoice.amount_cents}" in client.get("/console/invoices/").content.decode()
    for name in (
        "invoices",
        "statements",
        "payouts",
        "failed",
        "adjustments",
        "anomalies",
        "events",
        "audit",
    ):
        assert client.get(f"/console/{name}/").status_code == 200
    rows = list(csv.reader(io.StringIO(client.get("/console/statements/?format=csv").content.decode())))
    assert rows[0][:3] == ["id", "lease", "day"] and len(rows) == 2
    overview = client.get("/console/").content.decode()
    assert "Money traded" in overview
    detail = client.get(f"/console/invoices/{paid_invoice.pk}/").content.decode()
    assert "delivered GPU-s" in detail


def test_a_small_credit_is_applied_at_once_with_a_credit_note_and_a_ledger_entry(
    client, paid_invoice, stripe_standin
):
    user = staff(client)
    client.post(
        f"/console/invoices/{paid_invoice.pk}/adjust",
        {"kind": "credit", "amount_cents": "300", "reason": "slow"},
    )
    adjustment = Adjustment.objects.get()
    assert adjustment.status == AdjustmentStatus.APPLIED
    assert len(stripe_standin.objects("credit_note")) == 1
    assert LedgerTransaction.objects.filter(idempotency_key=f"adjustment:{adjustment.pk}").count() == 1
    assert AuditEntry.objects.filter(actor=user, action="adjustment.requested").exists()


def test_an_adjustment_without_a_reason_is_refused(client, paid_invoice):
    staff(client)
    response = client.post(
        f"/console/invoices/{paid_invoice.pk}/adjust",
        {"kind": "refund", "amount_cents": "100", "reason": " "},
    )
    assert response.status_code == 422 and Adjustment.objects.count() == 0


def test_a_large_refund_needs_a_second_staff_member(client, paid_invoice, stripe_standin):
    first = staff(client)
    client.post(
        f"/console/invoices/{paid_invoice.pk}/adjust",
        {"kind": "refund", "amount_cents": "600", "reason": "outage"},
    )
    adjustment = Adjustment.objects.get()
    assert adjustment.status == AdjustmentStatus.AWAITING_APPROVAL
    assert client.post(f"/console/adjustments/{adjustment.pk}/approve").status_code == 409
    assert stripe_standin.objects("refund") == []
    client.logout()
    second = staff(client)
    client.post(f"/console/adjustments/{adjustment.pk}/approve")
    adjustment.refresh_from_db()
    assert adjustment.status == AdjustmentStatus.APPLIED and adjustment.approved_by == second
    assert adjustment.requested_by == first
    assert [r["amount"] for r in stripe_standin.objects("refund")] == [600]
    assert Invoice.objects.get().status == InvoiceStatus.PAID
