"""Sign up in a browser, see the validators' errors next to the field, create a team, log out."""

from __future__ import annotations

from playwright.sync_api import expect

from marketplace.models import Membership, Role


def test_sign_up_and_create_a_team(page, db):
    page.goto("/")
    page.get_by_role("link", name="Sign up").click()
    page.get_by_label("Email address").fill("ada@example.com")
    page.get_by_label("Password").fill("12345")
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#field-password .errorlist")).to_contain_text("too short")
    page.get_by_label("Password").fill("correct horse 42")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Create a team")).to_be_visible()
    page.get_by_label("Team name").fill("Orbit Labs")
    page.get_by_role("button", name="Create team").click()
    expect(page.get_by_role("heading", name="Team Orbit Labs")).to_be_visible()
    expect(page.locator(".site-header")).to_contain_text("Orbit Labs")
    assert Membership.objects.get(user__email="ada@example.com").role == Role.OWNER
    page.get_by_role("button", name="Log out").click()
    expect(page.locator(".site-header")).to_contain_text("Log in")
