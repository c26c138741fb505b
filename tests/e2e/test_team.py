"""An owner invites a member by link; the invitee signs up, opens it and joins with the role."""

from __future__ import annotations

from playwright.sync_api import expect

from marketplace.models import Membership, Role
from tests.e2e.conftest import login, shot


def test_invite_and_accept(page, acme):
    login(page, acme.owner)
    page.get_by_role("link", name="Team", exact=True).click()
    page.get_by_label("Email address").fill("newcomer@example.com")
    page.locator("#id_role").select_option("viewer")  # "Role" also labels each member's role
    page.get_by_role("button", name="Create invitation link").click()
    expect(page.get_by_role("status").filter(has_text="sends no email")).to_be_visible()
    link = page.get_by_label("Invitation link").input_value()
    assert "/team/invite/" in link
    shot(page, "team")
    page.get_by_role("button", name="Log out").click()

    page.goto(link)
    expect(page.get_by_text("as viewer", exact=False)).to_be_visible()
    page.get_by_role("link", name="Sign up as newcomer@example.com").click()
    page.get_by_label("Email address").fill("newcomer@example.com")
    page.get_by_label("Password").fill("correct horse 42")
    page.get_by_role("button", name="Create account").click()
    page.get_by_role("button", name="Join Acme").click()
    expect(page.get_by_role("status")).to_contain_text("You joined Acme as viewer")
    expect(page.locator("table.members")).to_contain_text(acme.owner.email)
    assert Membership.objects.get(user__email="newcomer@example.com", team=acme.team).role == Role.VIEWER

    # The link worked once.
    page.goto(link)
    expect(page.get_by_role("alert")).to_contain_text("used already")
