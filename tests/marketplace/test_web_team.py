"""Sign-up, teams, invitations and roles through the HTML pages."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import pytest
import time_machine
from django.utils import timezone

from marketplace import services
from marketplace.models import Invitation, Membership, Role, Team, User
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

LINK = re.compile(r"https?://[^\"'<\s]+/team/invite/([A-Za-z0-9_-]+)/")


def invite(client, email: str, role: str = "trader") -> str:
    """An owner's client creates an invitation on the team page; returns the link's token."""
    response = client.post("/team/invite/", {"email": email, "role": role})
    assert response.status_code == 200, response.content.decode()
    text = response.content.decode()
    assert "Gridx sends no email" in text
    found = LINK.search(text)
    assert found, text
    return found.group(1)


# --- sign-up ------------------------------------------------------------------------------------


def test_sign_up_signs_in_and_leads_to_team_creation(client):
    response = client.post("/accounts/signup/", {"email": "Ada@Example.com", "password": "correct horse 42"})
    assert response.status_code == 302 and response["Location"] == "/team/new/"
    user = User.objects.get(email="ada@example.com")
    assert client.get("/team/new/").status_code == 200  # signed in
    created = client.post("/team/new/", {"name": "Orbit Labs"})
    assert created.status_code == 302 and created["Location"] == "/team/"
    team = Team.objects.get(name="Orbit Labs")
    assert Membership.objects.get(team=team, user=user).role == Role.OWNER
    page = client.get("/team/").content.decode()
    assert "Team Orbit Labs" in page and "ada@example.com" in page


def test_sign_up_errors_sit_next_to_their_fields(client):
    UserFactory(email="taken@example.com")
    response = client.post("/accounts/signup/", {"email": "taken@example.com", "password": "123"})
    assert response.status_code == 200
    form = response.context["form"]
    assert "log in instead" in " ".join(form.errors["email"])
    password_errors = " ".join(form.errors["password"])
    assert "too short" in password_errors and "entirely numeric" in password_errors
    text = response.content.decode()
    assert 'id="id_password_error"' in text and 'id="id_email_error"' in text
    bad = client.post("/accounts/signup/", {"email": "not-an-email", "password": "correct horse 42"})
    assert "Enter a valid email address" in " ".join(bad.context["form"].errors["email"])
    assert not User.objects.filter(email="not-an-email").exists()


def test_sign_up_refuses_a_password_like_the_email(client):
    response = client.post(
        "/accounts/signup/", {"email": "quentin.marsh@example.com", "password": "quentinmarsh"}
    )
    assert "too similar" in " ".join(response.context["form"].errors["password"])


def test_sign_up_follows_a_local_next_only(client):
    ok = client.post(
        "/accounts/signup/?next=/team/invite/abc/", {"email": "a@example.com", "password": "correct horse 42"}
    )
    assert ok["Location"] == "/team/invite/abc/"
    client.post("/accounts/logout/")
    evil = client.post(
        "/accounts/signup/",
        {"email": "b@example.com", "password": "correct horse 42", "next": "https://evil.test/"},
    )
    assert evil["Location"] == "/team/new/"


def test_log_out_is_a_post(client, acme):
    client.force_login(acme.owner)
    assert client.get("/accounts/logout/").status_code == 405
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/team/")["Location"].startswith("/accounts/login/")


# --- the team page --------------------------------------------------------------------------


def test_the_team_page_lists_members_with_roles_in_few_queries(client, acme, django_assert_max_num_queries):
    for _ in range(30):
        MembershipFactory(team=acme.team, role=Role.VIEWER)
    client.force_login(acme.owner)
    with django_assert_max_num_queries(12):
        response = client.get("/team/")
    text = response.content.decode()
    assert response.status_code == 200
    assert acme.owner.email in text and "Page 1 of 2" in text
    first_role = text.split('<table class="members">')[1].split('<span class="badge">')[1].split("<")[0]
    assert first_role == "owner"  # owners first
    assert "Invite a member" in text


def test_anonymous_visitors_are_sent_to_log_in_and_teamless_users_to_create_one(client):
    assert client.get("/team/")["Location"] == "/accounts/login/?next=/team/"
    client.force_login(UserFactory())
    assert client.get("/team/")["Location"] == "/team/new/"


def test_a_viewer_sees_members_but_cannot_invite_or_change_roles(client, acme):
    client.force_login(acme.viewer)
    page = client.get("/team/").content.decode()
    assert acme.owner.email in page and "Invite a member" not in page
    assert "Only owners can invite" in page
    refused = client.post("/team/invite/", {"email": "x@example.com", "role": "owner"})
    assert refused.status_code == 403 and "needs owner" in refused.content.decode()
    assert not Invitation.objects.exists()
    trader = Membership.objects.get(team=acme.team, user=acme.trader)
    assert client.post(f"/team/members/{trader.pk}/role/", {"role": "viewer"}).status_code == 403
    removed = client.post(f"/team/members/{trader.pk}/remove/", follow=True)
    assert "Your role in Acme is viewer; removing members needs owner." in removed.content.decode()
    assert Membership.objects.filter(pk=trader.pk).exists()


def test_invitation_links_are_shown_once_and_stored_as_hashes(client, acme):
    client.force_login(acme.owner)
    token = invite(client, "new@example.com", "viewer")
    stored = Invitation.objects.get()
    assert stored.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert token not in stored.token_sha256
    later = client.get("/team/").content.decode()
    assert "new@example.com" in later and token not in later  # pending, but the link is gone


def test_invitation_form_errors_are_next_to_the_fields(client, acme):
    client.force_login(acme.owner)
    response = client.post("/team/invite/", {"email": acme.trader.email, "role": "trader"})
    assert response.status_code == 422
    assert "already a member" in " ".join(response.context["invite_form"].errors["email"])
    bad_role = client.post("/team/invite/", {"email": "z@example.com", "role": "king"})
    assert "Select a valid choice" in " ".join(bad_role.context["invite_form"].errors["role"])


def test_an_invited_person_signs_up_opens_the_link_and_joins_with_the_role(client, acme):
    client.force_login(acme.owner)
    token = invite(client, "newcomer@example.com", "viewer")
    client.post("/accounts/logout/")
    landing = client.get(f"/team/invite/{token}/").content.decode()
    assert "join <strong>Acme</strong> as <strong>viewer</strong>" in landing
    assert f"/accounts/signup/?next=/team/invite/{token}/" in landing
    signed = client.post(
        f"/accounts/signup/?next=/team/invite/{token}/",
        {"email": "newcomer@example.com", "password": "correct horse 42"},
    )
    assert signed["Location"] == f"/team/invite/{token}/"
    joined = client.post(f"/team/invite/{token}/")
    assert joined.status_code == 302 and joined["Location"] == "/team/"
    newcomer = User.objects.get(email="newcomer@example.com")
    assert Membership.objects.get(team=acme.team, user=newcomer).role == Role.VIEWER
    assert "You joined Acme as viewer" in client.get("/team/").content.decode()


def test_an_invitation_link_works_once(client, acme, beta):
    client.force_login(acme.owner)
    token = invite(client, beta.owner.email, "trader")
    client.force_login(beta.owner)
    assert client.post(f"/team/invite/{token}/").status_code == 302
    again = client.post(f"/team/invite/{token}/")
    assert again.status_code == 410 and "used already" in again.content.decode()
    assert Membership.objects.filter(team=acme.team, user=beta.owner).count() == 1


def test_an_invitation_for_someone_else_cannot_be_used(client, acme, beta):
    client.force_login(acme.owner)
    token = invite(client, "someone@example.com")
    client.force_login(beta.trader)
    page = client.get(f"/team/invite/{token}/").content.decode()
    assert "this invitation is for someone@example.com" in page
    refused = client.post(f"/team/invite/{token}/")
    assert refused.status_code == 403
    assert not Membership.objects.filter(team=acme.team, user=beta.trader).exists()


def test_an_expired_invitation_is_refused_with_a_clear_message(client, acme, beta):
    client.force_login(acme.owner)
    token = invite(client, beta.viewer.email)
    client.force_login(beta.viewer)
    with time_machine.travel(timezone.now() + dt.timedelta(days=8)):
        response = client.post(f"/team/invite/{token}/")
    assert response.status_code == 410
    assert "This invitation expired on" in response.content.decode()
    assert "Ask an owner of the team for a new link" in response.content.decode()
    assert not Membership.objects.filter(team=acme.team, user=beta.viewer).exists()


def test_unknown_and_withdrawn_links(client, acme, beta):
    assert client.get("/team/invite/not-a-token/").status_code == 404
    client.force_login(acme.owner)
    token = invite(client, beta.viewer.email)
    client.post(f"/team/invitations/{Invitation.objects.get().pk}/revoke/")
    client.force_login(beta.viewer)
    response = client.post(f"/team/invite/{token}/")
    assert response.status_code == 410 and "withdrawn" in response.content.decode()


def test_an_owner_cannot_withdraw_another_teams_invitation(client, acme, beta):
    _, _ = services.invitation_create(team=beta.team, actor=beta.owner, email="q@example.com", role="viewer")
    client.force_login(acme.owner)
    client.post(f"/team/invitations/{Invitation.objects.get().pk}/revoke/")
    assert Invitation.objects.get().revoked_at is None


# --- roles and removals ---------------------------------------------------------------------


def test_owners_change_roles_and_remove_members(client, acme):
    client.force_login(acme.owner)
    trader = Membership.objects.get(team=acme.team, user=acme.trader)
    client.post(f"/team/members/{trader.pk}/role/", {"role": "billing"})
    trader.refresh_from_db()
    assert trader.role == Role.BILLING
    viewer = Membership.objects.get(team=acme.team, user=acme.viewer)
    response = client.post(f"/team/members/{viewer.pk}/remove/", follow=True)
    assert f"{acme.viewer.email} was removed from Acme" in response.content.decode()
    assert not Membership.objects.filter(pk=viewer.pk).exists()


def test_a_team_is_never_left_without_an_owner(client, acme):
    client.force_login(acme.owner)
    own = Membership.objects.get(team=acme.team, user=acme.owner)
    demoted = client.post(f"/team/members/{own.pk}/role/", {"role": "viewer"}, follow=True)
    assert "at least one owner" in demoted.content.decode()
    left = client.post(f"/team/members/{own.pk}/remove/", follow=True)
    assert "is the only owner of Acme; make another member an owner first" in left.content.decode()
    own.refresh_from_db()
    assert own.role == Role.OWNER
    # With a second owner, the first may leave.
    trader = Membership.objects.get(team=acme.team, user=acme.trader)
    client.post(f"/team/members/{trader.pk}/role/", {"role": "owner"})
    assert client.post(f"/team/members/{own.pk}/remove/")["Location"] == "/"
    assert not Membership.objects.filter(pk=own.pk).exists()


def test_members_of_another_team_cannot_be_touched(client, acme, beta):
    client.force_login(acme.owner)
    theirs = Membership.objects.get(team=beta.team, user=beta.trader)
    response = client.post(f"/team/members/{theirs.pk}/role/", {"role": "viewer"}, follow=True)
    assert "not found" in response.content.decode()
    client.post(f"/team/members/{theirs.pk}/remove/")
    theirs.refresh_from_db()
    assert theirs.role == Role.TRADER


def test_anyone_may_leave_a_team(client, acme):
    client.force_login(acme.viewer)
    own = Membership.objects.get(team=acme.team, user=acme.viewer)
    assert client.post(f"/team/members/{own.pk}/remove/")["Location"] == "/"
    assert not Membership.objects.filter(pk=own.pk).exists()
