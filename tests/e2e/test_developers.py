"""A developer in the browser: an API key created with scopes, its secret shown once."""

from __future__ import annotations

from playwright.sync_api import expect

from marketplace import services
from marketplace.models import ApiKey
from tests.e2e.conftest import login, shot


def test_an_owner_creates_an_api_key_and_sees_the_secret_once(page, acme):
    login(page, acme.owner)
    page.goto("/developers/")
    page.get_by_label("Key name").fill("pricing bot")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#field-scopes .errorlist")).to_contain_text("Tick at least one scope")
    page.get_by_label("Read the market and your own orders").check()
    page.get_by_label("Place, replace and cancel bids").check()
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("API key").input_value()
    key = ApiKey.objects.get(team=acme.team)
    assert secret.startswith(f"gx_{key.prefix}_") and key.key_sha256 == services.api_key_hash(secret)
    assert key.scopes == ["bids:write", "market:read"]
    expect(page.locator("#new-secret")).to_contain_text("only time it is shown")
    page.get_by_role("button", name="Copy the key").click()
    expect(page.locator(".copy-status")).not_to_be_empty()
    shot(page, "developers")
    page.reload()
    expect(page.locator("#new-secret")).to_have_count(0)
    assert secret not in page.content()
    expect(page.locator("tbody tr").first).to_contain_text("pricing bot")
