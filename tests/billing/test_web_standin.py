"""The stand-in's person pages: in a browser, Checkout's and onboarding's URLs show a form, and
submitting it sends the person back to our page as Stripe does."""

from __future__ import annotations

import urllib.error
import urllib.request

from billing import services
from billing.models import SellerAccount
from billing.stripe_gateway import gateway
from tests.factories import TeamFactory


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def submit(url: str, data: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, data=data.encode())) as answer:
            return answer.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", "")


def test_onboarding_link_shows_a_page_and_returns_to_our_return_url(db, stripe_standin):
    team = TeamFactory()
    url = services.seller_onboarding_link(
        team=team, refresh_url="http://gridx.test/r", return_url="http://gridx.test/billing/earnings/?x=1"
    )
    with urllib.request.urlopen(url) as page:
        html = page.read().decode()
    assert "Onboard to payouts" in html and 'method="post"' in html
    assert submit(url, "redirect=1&onboard=yes") == (303, "http://gridx.test/billing/earnings/?x=1")
    account = SellerAccount.objects.get(team=team)
    found = stripe_standin.server.state.get(account.stripe_account_id, "account")
    assert found["payouts_enabled"] is True
    assert [e["data"]["object"]["id"] for e in stripe_standin.events("account.updated")] == [
        account.stripe_account_id
    ]


def test_checkout_page_saves_a_card_and_returns_to_the_success_url(db, stripe_standin):
    team = TeamFactory()
    url = services.payment_setup_start(
        team=team, success_url="http://gridx.test/ok", cancel_url="http://x/no"
    )
    with urllib.request.urlopen(url) as page:
        assert "Save a card" in page.read().decode()
    assert submit(url, "redirect=1&card=ok") == (303, "http://gridx.test/ok")
    customer = services.customer_ensure(team=team)
    assert gateway().customer_card(customer=customer.stripe_customer_id) == {"brand": "visa", "last4": "4242"}
