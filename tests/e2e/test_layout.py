"""The shared layout: login, the acting team in the header, team switching, assets served by us."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from marketplace.models import Role
from tests.e2e.conftest import login
from tests.factories import MembershipFactory, TeamFactory, UserFactory


def test_wrong_password_is_explained_then_login_works(page, db):
    user = UserFactory()
    page.goto("/accounts/login/")
    page.get_by_label("Email address").fill(user.email)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("do not match")
    login(page, user)
    expect(page.locator(".site-header")).to_contain_text(user.email)


def test_team_switch_changes_the_acting_team(page, db):
    user = UserFactory()
    MembershipFactory(team=TeamFactory(name="Alpha", slug="alpha"), user=user, role=Role.OWNER)
    MembershipFactory(team=TeamFactory(name="Zeta", slug="zeta"), user=user, role=Role.VIEWER)
    login(page, user)
    switch = page.get_by_label("Team")
    expect(switch).to_have_value(re.compile(r"\d+"))
    assert "Alpha" in switch.locator("option:checked").inner_text()
    switch.select_option(label="Zeta (viewer)")
    expect(page.get_by_role("status")).to_contain_text("You now act for Zeta")
    assert "Zeta" in page.get_by_label("Team").locator("option:checked").inner_text()


def test_static_assets_come_from_our_server(page, live_server, db):
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto("/accounts/login/")
    page.wait_for_function("typeof window.htmx !== 'undefined'")
    assert requests and all(url.startswith(live_server.url) for url in requests), requests
