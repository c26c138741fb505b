"""The team billing API: a team's own statements, invoices (with lines to leases) and payouts."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from billing.models import Payout, Statement
from marketplace import services as market
from marketplace.models import Role, Scope
from tests.billing.test_web import member, paid, stated  # noqa: F401 (fixtures)
from tests.factories import TeamFactory


def key_client(team, scopes) -> APIClient:
    _, raw = market.api_key_create(team=team, actor=None, name="books", scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_an_invoice_lists_its_lines_with_lease_delivery_and_price(paid):  # noqa: F811
    deal, invoice = paid
    client = key_client(deal.buyer, [Scope.BILLING_READ])
    body = client.get(f"/api/v1/billing/invoices/{invoice.pk}").json()
    assert body["status"] == "paid" and body["amount_cents"] == invoice.amount_cents
    [line] = body["lines"]
    statement = Statement.objects.get(invoice=invoice)
    assert line["lease"] == deal.lease.pk
    assert line["delivered_gpu_seconds"] == statement.delivered_gpu_seconds
    assert line["net_cents"] == invoice.amount_cents
    assert [i["id"] for i in client.get("/api/v1/billing/invoices").json()["results"]] == [invoice.pk]
    assert client.get("/api/v1/billing/statements").json()["results"][0]["invoice"] == invoice.pk


def test_another_teams_invoice_is_not_found_and_its_lists_are_empty(paid):  # noqa: F811
    deal, invoice = paid
    stranger = key_client(deal.sellers[0], list(Scope.values))
    response = stranger.get(f"/api/v1/billing/invoices/{invoice.pk}")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/problem+json")
    assert stranger.get("/api/v1/billing/invoices").json()["results"] == []
    assert stranger.get("/api/v1/billing/statements").json()["results"] == []


def test_a_seller_reads_its_payouts_with_their_stripe_state(paid):  # noqa: F811
    deal, invoice = paid
    client = key_client(deal.sellers[1], [Scope.BILLING_READ])
    [payout] = client.get("/api/v1/billing/payouts").json()["results"]
    row = Payout.objects.get(seller=deal.sellers[1])
    assert payout["invoice"] == invoice.pk and payout["amount_cents"] == row.amount_cents
    assert payout["status"] == "sent" and payout["stripe_transfer_id"].startswith("tr_")


@pytest.mark.parametrize(("role", "status"), [(Role.BILLING, 200), (Role.OWNER, 200), (Role.TRADER, 403)])
def test_signed_in_members_need_a_role_that_holds_billing_read(db, role, status):
    client = APIClient()
    client.force_login(member(TeamFactory(), role))
    response = client.get("/api/v1/billing/invoices")
    assert response.status_code == status
    if status == 403:
        assert response.json()["code"] == "missing_scope"


def test_statements_page_by_cursor_and_refuse_a_bad_limit(paid):  # noqa: F811
    deal, _ = paid
    client = key_client(deal.buyer, [Scope.BILLING_READ])
    total = Statement.objects.filter(team=deal.buyer).count()
    first = client.get("/api/v1/billing/invoices?limit=1").json()
    assert len(first["results"]) == 1 and first["next"] is None
    seen, url = [], "/api/v1/billing/statements?limit=1"
    while url:
        page = client.get(url).json()
        seen += [s["id"] for s in page["results"]]
        url = page["next"]
    assert len(seen) == len(set(seen)) == total
    bad = client.get("/api/v1/billing/statements?limit=0")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "limit"
