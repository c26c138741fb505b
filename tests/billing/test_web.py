"""The team's billing pages: invoices traced to leases, the card, earnings and payouts, roles, queries."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import services
from billing.models import Invoice, InvoiceStatus, Payout, Statement, StatementPayable
from marketplace.models import Role
from tests.billing.conftest import DAY1, make_deal
from tests.billing.test_stripe_flows import AFTER_GRACE, ready, stated  # noqa: F401 (fixture)
from tests.factories import MembershipFactory, TeamFactory, UserFactory


def member(team, role=Role.OWNER):
    user = UserFactory()
    MembershipFactory(team=team, user=user, role=role)
    return user


@pytest.fixture
def paid(db, stripe_standin, stated):  # noqa: F811
    """The buyer saved a card, its day's invoice was paid and each seller got a payout."""
    ready(stripe_standin, stated)
    [invoice_id] = services.invoices_open_due(now=AFTER_GRACE)
    invoice = services.invoice_advance(invoice_id=invoice_id)
    assert invoice.status == InvoiceStatus.PAID
    services.payouts_run()
    return stated, invoice


def test_a_buyer_follows_an_invoice_line_to_its_statement_and_lease(client, paid):
    deal, invoice = paid
    statement = Statement.objects.get(invoice=invoice)
    client.force_login(member(deal.buyer))

    home = client.get("/billing/").content.decode()
    assert f"Invoice {invoice.pk}" in home and "Paid" in home
    dollars = f"${invoice.amount_cents // 100:,}.{invoice.amount_cents % 100:02d}"
    assert dollars in home
    assert "Visa ···· 4242" in home  # asked of the stand-in's customer

    detail = client.get(f"/billing/invoices/{invoice.pk}/").content.decode()
    assert f'href="/billing/statements/{statement.pk}/"' in detail
    assert f"Lease {deal.lease.pk}" in detail

    line = client.get(f"/billing/statements/{statement.pk}/").content.decode()
    assert f"{statement.delivered_gpu_seconds} GPU-seconds" in line
    assert f"{statement.leased_gpu_seconds} GPU-seconds" in line
    price = (deal.lease.payment_cents * 3600 * 2 + statement.lease_gpu_seconds) // (
        2 * statement.lease_gpu_seconds
    )
    assert f"${price // 100}.{price % 100:02d} per GPU-hour" in line
    assert f'href="/billing/leases/{deal.lease.pk}/"' in line

    lease = client.get(f"/billing/leases/{deal.lease.pk}/").content.decode()
    assert f"Lease {deal.lease.pk}" in lease and f"Statement {statement.pk}" in lease


def test_another_teams_invoice_statement_and_lease_do_not_exist(client, paid):
    deal, invoice = paid
    statement = Statement.objects.get(invoice=invoice)
    client.force_login(member(TeamFactory()))
    for url in (
        f"/billing/invoices/{invoice.pk}/",
        f"/billing/statements/{statement.pk}/",
        f"/billing/leases/{deal.lease.pk}/",
    ):
        assert client.get(url).status_code == 404, url
    assert f"Invoice {invoice.pk}" not in client.get("/billing/").content.decode()


@pytest.mark.parametrize(
    ("role", "status"), [(Role.OWNER, 200), (Role.BILLING, 200), (Role.TRADER, 403), (Role.VIEWER, 403)]
)
def test_only_owners_and_billing_members_see_money(client, db, role, status):
    team = TeamFactory()
    client.force_login(member(team, role))
    for url in ("/billing/", "/billing/statements/", "/billing/earnings/", "/billing/earnings/lines/"):
        response = client.get(url)
        assert response.status_code == status, url
        if status == 403:
            assert "needs owner or billing" in response.content.decode()
    if status == 403:
        assert client.post("/billing/payment-method").status_code == 403
        assert client.post("/billing/earnings/onboarding").status_code == 403


def test_anonymous_visitors_are_asked_to_log_in(client, db):
    response = client.get("/billing/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_adding_a_card_goes_through_checkout_and_shows_the_card(client, db, stripe_standin):
    team = TeamFactory()
    client.force_login(member(team, Role.BILLING))
    assert "Add a card" in client.get("/billing/").content.decode()
    response = client.post("/billing/payment-method")
    assert response.status_code == 302 and "/_standin/checkout/" in response["Location"]
    session = stripe_standin.act(response["Location"], card="ok")
    assert session["success_url"].endswith("/billing/?setup=done")
    page = client.get("/billing/?setup=done").content.decode()
    assert "Visa ···· 4242" in page and "Replace the card" in page


def test_a_seller_sees_its_payouts_earnings_and_finishes_onboarding(client, db, stripe_standin):
    deal = make_deal(start=DAY1, hours=2, payment_cents=1000)
    seller = deal.sellers[0]
    client.force_login(member(seller))
    page = client.get("/billing/earnings/").content.decode()
    assert "not set up" in page and "Set up payouts with Stripe" in page

    response = client.post("/billing/earnings/onboarding")
    assert response.status_code == 302 and "/_standin/accounts/" in response["Location"]
    stripe_standin.act(response["Location"])  # the person finishes onboarding at Stripe
    page = client.get("/billing/earnings/?onboarding=return").content.decode()
    assert "enabled" in page and "Set up payouts" not in page

    invoice = Invoice.objects.create(
        team=deal.buyer,
        currency="usd",
        period_start=DAY1.date(),
        period_end=DAY1.date() + dt.timedelta(days=1),
        status=InvoiceStatus.PAID,
        amount_cents=1000,
    )
    Payout.objects.create(invoice=invoice, seller=seller, amount_cents=900, currency="usd", status="held")
    page = client.get("/billing/earnings/").content.decode()
    assert "$9.00" in page and "Held (seller not onboarded)" in page


def test_the_seller_sees_its_share_of_each_statement(client, paid):
    deal, _invoice = paid
    seller = deal.sellers[1]
    share = StatementPayable.objects.get(seller=seller)
    client.force_login(member(seller))
    page = client.get("/billing/earnings/").content.decode()
    cents = share.payable_cents
    assert f"${cents // 100:,}.{cents % 100:02d}" in page
    assert f"Lease {deal.lease.pk}" in page and "Transfer created" in page
    lines = client.get("/billing/earnings/lines/").content.decode()
    assert f"Lease {deal.lease.pk}" in lines


# --- Query counts: every page is O(1) queries whatever the number of rows -------------------------


def _rows(buyer, seller_team, days: int, *, offset: int = 0) -> None:
    """`days` days of one lease: a statement, a paid invoice, a seller's share and a payout each."""
    start = DAY1 + dt.timedelta(days=offset)
    deal = make_deal(start=start, hours=24 * days, payment_cents=240_000 * days, buyer=buyer)
    source = deal.lease.sources.get()
    for i in range(days):
        day = start.date() + dt.timedelta(days=i)
        invoice = Invoice.objects.create(
            team=buyer,
            currency="usd",
            period_start=day,
            period_end=day + dt.timedelta(days=1),
            status=InvoiceStatus.PAID,
            amount_cents=1000 + i,
        )
        statement = Statement.objects.create(
            lease=deal.lease,
            team=buyer,
            day=day,
            currency="usd",
            window_start=start + dt.timedelta(days=i),
            window_end=start + dt.timedelta(days=i + 1),
            leased_gpu_seconds=86_400 * 2,
            delivered_gpu_seconds=86_400 * 2 - i,
            lease_payment_cents=deal.lease.payment_cents,
            lease_gpu_seconds=86_400 * 2 * days,
            charge_cents=1000 + i,
            fee_cents=100,
            invoice=invoice,
        )
        StatementPayable.objects.create(
            statement=statement, source=source, seller=seller_team, payable_cents=900 + i
        )
        Payout.objects.create(invoice=invoice, seller=seller_team, amount_cents=900 + i, currency="usd")


def _count(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize(
    "url", ["/billing/", "/billing/statements/", "/billing/earnings/", "/billing/earnings/lines/"]
)
def test_pages_take_the_same_queries_for_3_rows_and_for_60(client, db, url, django_assert_max_num_queries):
    team = TeamFactory()
    client.force_login(member(team))
    _rows(team, team, 3)
    client.get(url)  # the first visit also records the acting team in the session
    few = _count(client, url)
    _rows(team, team, 57, offset=3)
    with django_assert_max_num_queries(12):
        assert client.get(url).status_code == 200
    assert _count(client, url) == few


def test_invoice_and_lease_pages_take_constant_queries(client, db, django_assert_max_num_queries):
    team = TeamFactory()
    client.force_login(member(team))
    _rows(team, team, 30)
    invoice = Invoice.objects.filter(team=team).first()
    lease_id = Statement.objects.filter(team=team).values_list("lease_id", flat=True).first()
    with django_assert_max_num_queries(10):
        client.get(f"/billing/invoices/{invoice.pk}/")
    with django_assert_max_num_queries(10):
        client.get(f"/billing/leases/{lease_id}/")
