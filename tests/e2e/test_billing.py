"""Billing in the browser: a buyer follows an invoice line to its lease, a seller sees earnings, staff
open the console (after the two-factor check); the pages fit a phone."""

from __future__ import annotations

from playwright.sync_api import expect

from billing import totp
from billing.models import Statement
from marketplace.models import Role
from tests.billing.conftest import stripe_standin  # noqa: F401 (fixture)
from tests.billing.test_stripe_flows import stated  # noqa: F401 (fixture)
from tests.billing.test_web import member, paid  # noqa: F401 (fixture)
from tests.e2e.conftest import login, shot
from tests.factories import UserFactory


def fits_the_width(page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_a_buyer_follows_an_invoice_line_to_its_lease(page, paid):  # noqa: F811
    deal, invoice = paid
    statement = Statement.objects.get(invoice=invoice)
    login(page, member(deal.buyer, Role.BILLING))
    page.get_by_role("link", name="Billing", exact=True).click()
    expect(page.get_by_role("heading", name="Billing", exact=True)).to_be_visible()
    expect(page.locator(".cards")).to_contain_text("Visa ···· 4242")
    shot(page, "billing")
    page.get_by_role("link", name=f"Invoice {invoice.pk}").click()
    expect(page.get_by_role("heading", name=f"Invoice {invoice.pk}")).to_be_visible()
    shot(page, "billing-invoice")
    page.get_by_role("link", name=f"Statement {statement.pk}").click()
    expect(page.get_by_text(f"{statement.delivered_gpu_seconds} GPU-seconds")).to_be_visible()
    page.get_by_role("main").get_by_role("link", name=f"Lease {deal.lease.pk}").click()
    expect(page.get_by_role("heading", name=f"Lease {deal.lease.pk}")).to_be_visible()
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"/billing/invoices/{invoice.pk}/")
    assert fits_the_width(page)


def test_a_seller_sees_earnings_and_staff_open_the_console(page, paid):  # noqa: F811
    deal, _ = paid
    login(page, member(deal.sellers[1]))
    page.goto("/billing/earnings/")
    expect(page.get_by_role("heading", name="Payouts", exact=True)).to_be_visible()
    expect(page.locator("table").first).to_contain_text("Transfer created")
    shot(page, "earnings")

    page.context.clear_cookies()
    staff = UserFactory(is_staff=True)
    login(page, staff)
    page.goto("/console/")
    page.get_by_label("Code").fill(totp.code_for(totp.device_for(staff)))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Billing overview")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()  # the site's layout
    page.get_by_role("link", name="Invoices", exact=True).click()
    expect(page.get_by_role("table")).to_contain_text(deal.buyer.name)
    page.goto("/console/")
    shot(page, "console")
