"""The Developers pages: API keys shown once, revoke and kill switch, webhooks and their deliveries."""

from __future__ import annotations

import datetime as dt
import re

from django.utils import timezone

from marketplace import services
from marketplace.models import (
    ApiKey,
    BidStatus,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from tests.factories import BidFactory


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def make_key(side, name: str = "bot", **kwargs) -> ApiKey:
    key, _ = services.api_key_create(
        team=side.team, actor=side.owner, name=name, scopes=["market:read", "bids:write"], **kwargs
    )
    return key


def make_endpoint(side, url: str = "https://bot.example/hooks") -> WebhookEndpoint:
    endpoint, _ = services.webhook_endpoint_create(
        team=side.team, actor=side.owner, url=url, events=["bid.won", "bid.lost"]
    )
    return endpoint


# --- API keys ----------------------------------------------------------------------------------


def test_a_new_keys_secret_is_shown_once_and_only_its_hash_is_kept(client, acme):
    client.force_login(acme.owner)
    response = client.post(
        "/developers/keys/new/",
        {"name": "pricing bot", "scopes": ["market:read", "bids:write"], "exposure_cap": "1,500.00"},
    )
    assert response["Location"] == "/developers/"
    page = text(client.get("/developers/"))
    secret = re.search(r'id="secret-value" class="mono" readonly value="(gx_[^"]+)"', page).group(1)
    key = ApiKey.objects.get(team=acme.team, name="pricing bot")
    assert key.key_sha256 == services.api_key_hash(secret) and secret.startswith(f"gx_{key.prefix}_")
    assert (key.scopes, key.exposure_cap_cents) == (["bids:write", "market:read"], 150_000)
    assert "only time it is shown" in page and "$1,500.00" in page
    again = text(client.get("/developers/"))
    assert secret not in again and "pricing bot" in again and f"gx_{key.prefix}_…" in again


def test_key_form_errors_are_next_to_their_fields(client, acme):
    client.force_login(acme.owner)
    past = (timezone.now() - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(
        "/developers/keys/new/", {"name": "x", "expires_at": past, "exposure_cap": "10.001"}
    )
    assert response.status_code == 422
    page = text(response)
    assert re.search(r'id="field-scopes".*?Tick at least one scope', page)
    assert re.search(r'id="field-exposure_cap".*?fraction of a cent', page)
    response = client.post(
        "/developers/keys/new/", {"name": "x", "scopes": ["market:read"], "expires_at": past}
    )
    assert re.search(r'id="field-expires_at".*?a key must expire in the future', text(response))
    assert not ApiKey.objects.exists()


def test_only_owners_create_or_revoke_keys(client, acme):
    key = make_key(acme)
    for user in (acme.trader, acme.viewer):
        client.force_login(user)
        page = text(client.get("/developers/"))
        assert "Only owners of the team can create or revoke API keys" in page
        assert (
            client.post("/developers/keys/new/", {"name": "n", "scopes": ["market:read"]}).status_code == 403
        )
        assert client.post(f"/developers/keys/{key.pk}/revoke/").status_code == 403
    assert ApiKey.objects.count() == 1
    key.refresh_from_db()
    assert key.revoked_at is None
    client.force_login(acme.owner)
    page = text(client.post(f"/developers/keys/{key.pk}/revoke/", follow=True))
    key.refresh_from_db()
    assert key.revoked_at is not None and "Revoked</span>" in page


def test_kill_switch_confirms_then_revokes_and_cancels_the_keys_open_bids(client, acme, gpu_catalogue):
    key = make_key(acme)
    bids = [BidFactory(team=acme.team, api_key=key) for _ in range(3)]
    other = BidFactory(team=acme.team)
    client.force_login(acme.trader)
    confirm = text(client.get(f"/developers/keys/{key.pk}/kill/"))
    assert "cancels its 3 open bids" in confirm
    assert all(b.status == BidStatus.OPEN for b in bids)  # the GET changed nothing
    page = text(client.post(f"/developers/keys/{key.pk}/kill/", follow=True))
    assert "3 open bids were cancelled" in page and "Killed</span>" in page
    for bid in bids:
        bid.refresh_from_db()
        assert bid.status == BidStatus.CANCELLED
    other.refresh_from_db()
    assert other.status == BidStatus.OPEN


def test_a_viewer_has_no_kill_switch(client, acme):
    key = make_key(acme)
    client.force_login(acme.viewer)
    assert "Kill switch" not in text(client.get("/developers/"))
    assert client.post(f"/developers/keys/{key.pk}/kill/").status_code == 403
    key.refresh_from_db()
    assert key.killed_at is None


def test_another_teams_keys_are_invisible_and_404(client, acme, beta):
    theirs = make_key(beta, name="beta-secret-bot")
    client.force_login(acme.owner)
    assert "beta-secret-bot" not in text(client.get("/developers/"))
    assert client.get(f"/developers/keys/{theirs.pk}/kill/").status_code == 404
    assert client.post(f"/developers/keys/{theirs.pk}/kill/").status_code == 404
    assert client.post(f"/developers/keys/{theirs.pk}/revoke/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None and theirs.killed_at is None


def test_keys_page_is_constant_in_queries(client, acme, django_assert_max_num_queries):
    for i in range(40):
        make_key(acme, name=f"bot {i}", expires_at=timezone.now() + dt.timedelta(days=i + 1))
    client.force_login(acme.owner)
    with django_assert_max_num_queries(8):
        response = client.get("/developers/")
    assert response.status_code == 200 and text(response).count("Kill switch…") == 25
    assert 'href="/api/docs/"' in text(response)


# --- webhooks ----------------------------------------------------------------------------------


def test_a_new_endpoints_signing_secret_is_shown_once(client, acme):
    client.force_login(acme.trader)
    response = client.post(
        "/developers/webhooks/new/",
        {"url": "https://bot.example/gridx", "events": ["bid.won", "lease.started"]},
    )
    assert response["Location"] == "/developers/webhooks/"
    page = text(client.get("/developers/webhooks/"))
    secret = re.search(r'id="secret-value" class="mono" readonly value="([^"]+)"', page).group(1)
    endpoint = WebhookEndpoint.objects.get(team=acme.team)
    assert endpoint.events == ["bid.won", "lease.started"] and secret not in endpoint.secret_encrypted
    assert secret not in text(client.get("/developers/webhooks/"))


def test_webhook_form_explains_https_and_events(client, acme, settings):
    settings.WEBHOOKS_ALLOW_HTTP = False
    client.force_login(acme.owner)
    response = client.post("/developers/webhooks/new/", {"url": "http://bot.example/hooks"})
    page = text(response)
    assert response.status_code == 422
    assert re.search(r'id="field-events".*?Tick at least one event', page)
    response = client.post(
        "/developers/webhooks/new/", {"url": "http://bot.example/hooks", "events": ["bid.won"]}
    )
    assert re.search(r'id="field-url".*?webhook URLs must use https', text(response))
    assert not WebhookEndpoint.objects.exists()


def test_delivery_log_shows_attempts_with_response_codes_and_replays(client, acme):
    endpoint = make_endpoint(acme)
    failed = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event="bid.won",
        event_id="round:7:bid:42",
        payload="{}",
        status=DeliveryStatus.FAILED,
    )
    now = timezone.now()
    WebhookAttempt.objects.create(delivery=failed, number=1, at=now, status_code=500, duration_ms=12)
    WebhookAttempt.objects.create(delivery=failed, number=2, at=now, error="ConnectError: refused")
    client.force_login(acme.trader)
    page = text(client.get(f"/developers/webhooks/{endpoint.pk}/"))
    assert (
        "round:7:bid:42" in page
        and "HTTP 500" in page
        and "no response" in page
        and "Failed (gave up)" in page
    )
    page = text(client.post(f"/developers/deliveries/{failed.pk}/replay/", follow=True))
    replay = WebhookDelivery.objects.get(replay_of=failed)
    assert (replay.event_id, replay.status) == ("round:7:bid:42", DeliveryStatus.PENDING)
    assert f"queued again as delivery {replay.pk}" in page and f"replay of #{failed.pk}" in page


def test_a_disabled_endpoint_cannot_be_replayed_and_viewers_cannot_replay(client, acme):
    endpoint = make_endpoint(acme)
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, event="bid.won", event_id="e1", payload="{}")
    client.force_login(acme.viewer)
    assert "Replay</button>" not in text(client.get(f"/developers/webhooks/{endpoint.pk}/"))
    assert client.post(f"/developers/deliveries/{delivery.pk}/replay/").status_code == 403
    client.force_login(acme.owner)
    client.post(f"/developers/webhooks/{endpoint.pk}/disable/")
    page = text(client.post(f"/developers/deliveries/{delivery.pk}/replay/", follow=True))
    assert "is disabled; enable or recreate it first" in page
    assert WebhookDelivery.objects.filter(replay_of=delivery).count() == 0


def test_another_teams_endpoints_and_deliveries_are_404(client, acme, beta):
    theirs = make_endpoint(beta, url="https://beta.example/hooks")
    delivery = WebhookDelivery.objects.create(endpoint=theirs, event="bid.won", event_id="e1", payload="{}")
    client.force_login(acme.owner)
    assert "beta.example" not in text(client.get("/developers/webhooks/"))
    assert client.get(f"/developers/webhooks/{theirs.pk}/").status_code == 404
    assert client.post(f"/developers/webhooks/{theirs.pk}/disable/").status_code == 404
    assert client.post(f"/developers/deliveries/{delivery.pk}/replay/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.active


def test_webhook_pages_are_constant_in_queries(client, acme, django_assert_max_num_queries):
    endpoint = make_endpoint(acme)
    for i in range(5):
        make_endpoint(acme, url=f"https://bot{i}.example/hooks")
    now = timezone.now()
    for i in range(30):
        d = WebhookDelivery.objects.create(endpoint=endpoint, event="bid.won", event_id=f"e{i}", payload="{}")
        WebhookAttempt.objects.create(delivery=d, number=1, at=now, status_code=503)
    client.force_login(acme.owner)
    with django_assert_max_num_queries(8):
        assert client.get("/developers/webhooks/").status_code == 200
    with django_assert_max_num_queries(9):
        response = client.get(f"/developers/webhooks/{endpoint.pk}/")
    assert text(response).count("HTTP 503") == 25
