"""With a state file, the Stripe stand-in remembers its objects across a restart (the demo's var/)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from billing.stripe_gateway import GatewayError, StripeGateway
from billing.stripe_standin import StandIn


@contextmanager
def running(state_file: Path | None) -> Iterator[tuple[StandIn, StripeGateway]]:
    standin = StandIn(webhook_secret="whsec_state_test", state_file=state_file).start()
    try:
        yield standin, StripeGateway(api_key="sk_test_state", api_base=standin.url)
    finally:
        standin.stop()


def onboard(standin: StandIn, account: str) -> None:
    request = urllib.request.Request(f"{standin.url}/_standin/accounts/{account}/onboard", data=b"")
    with urllib.request.urlopen(request) as answer:  # noqa: S310 (the local stand-in)
        assert json.loads(answer.read())["payouts_enabled"] is True


def test_customers_accounts_and_idempotent_answers_survive_a_restart(tmp_path):
    state_file = tmp_path / "var" / "stripe-standin.json"
    with running(state_file) as (standin, gw):
        customer = gw.customer_create(team_id=1, name="Acme", key="customer:team:1")
        account = gw.account_create(team_id=2, key="account:team:2")
        onboard(standin, account)

    with running(state_file) as (standin, gw):
        assert gw.customer_card(customer=customer) is None  # retrievable: no "No such customer"
        assert gw.account_retrieve(account=account)["payouts_enabled"] is True
        # The same key and parameters replay the saved answer instead of making a second customer.
        assert gw.customer_create(team_id=1, name="Acme", key="customer:team:1") == customer
        with pytest.raises(GatewayError, match="same parameters"):
            gw.customer_create(team_id=3, name="Other", key="customer:team:1")
        # A seller payout to the account made before the restart is sent.
        transfer = gw.transfer_create(
            amount=1234,
            currency="usd",
            destination=account,
            transfer_group="payout-1",
            source_transaction="",
            payout_id=1,
            key="payout:1",
        )
        assert gw.transfer_retrieve(transfer=transfer)["destination"] == account
        # New objects do not reuse the ids of the saved ones.
        other = gw.customer_create(team_id=4, name="Beta", key="customer:team:4")
        customers = [o["id"] for o in standin.state.objects.values() if o["object"] == "customer"]
        assert sorted(customers) == sorted([customer, other]) and other != customer

    with running(state_file) as (standin, gw):
        assert gw.transfer_retrieve(transfer=transfer)["amount"] == 1234


def test_without_a_state_file_a_restart_forgets_everything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with running(None) as (_, gw):
        customer = gw.customer_create(team_id=1, name="Acme", key="c")
    with running(None) as (_, gw), pytest.raises(GatewayError, match="No such customer"):
        gw.customer_card(customer=customer)
    assert list(tmp_path.iterdir()) == []


def test_an_unreadable_state_file_stops_the_start_instead_of_forgetting(tmp_path):
    state_file = tmp_path / "stripe-standin.json"
    state_file.write_text("{not json")
    with pytest.raises(SystemExit, match="cannot read state file"):
        StandIn(state_file=state_file)
    assert state_file.read_text() == "{not json"
