"""Webhooks: the signing recipe, deliveries to a real HTTP endpoint, retries, giving up, replays."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.utils import timezone

from marketplace import services as market
from marketplace import webhooks
from marketplace.models import DeliveryStatus, WebhookDelivery

from .conftest import key_client


class Receiver:
    """A real HTTP endpoint on loopback that records requests and answers with `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok" if receiver.status < 300 else b"boom")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_the_documented_recipe_verifies_and_refuses_tampering():
    secret = webhooks.new_secret()
    body = b'{"id":"round:7:bid:42","type":"bid.won"}'
    header = webhooks.sign(secret, body, timestamp=1_800_000_000)
    assert webhooks.verify(secret, body, header, now=1_800_000_100) == 1_800_000_000
    with pytest.raises(webhooks.SignatureError, match="no v1 signature matches"):
        webhooks.verify(secret, body.replace(b"42", b"43"), header, now=1_800_000_100)
    with pytest.raises(webhooks.SignatureError, match="no v1 signature matches"):
        webhooks.verify(webhooks.new_secret(), body, header, now=1_800_000_100)
    with pytest.raises(webhooks.SignatureError, match="more than 300 s"):
        webhooks.verify(secret, body, header, now=1_800_000_000 + 301)
    # The recipe by hand, as a receiver in any language would write it.
    import hashlib
    import hmac

    t, v1 = (part.split("=", 1)[1] for part in header.split(","))
    assert hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest() == v1


def _endpoint(world, url, events=("bid.won", "bid.lost")):
    return market.webhook_endpoint_create(
        team=world.acme.team, actor=world.acme.owner, url=url, events=events
    )


def test_a_delivery_reaches_the_endpoint_signed_and_is_logged(world, receiver):
    endpoint, secret = _endpoint(world, receiver.url)
    sent = market.webhook_event_emit(
        team=world.acme.team, event="bid.won", event_id="round:9:bid:1", data={"bid": 1}
    )
    # The world's own endpoint also takes bid.won: one delivery per subscribed endpoint.
    assert {d.endpoint_id for d in sent} == {endpoint.pk, world.endpoint.pk}
    [delivery] = [d for d in sent if d.endpoint_id == endpoint.pk]
    done = market.webhook_attempt(delivery_id=delivery.pk)
    assert done is not None and done.status == DeliveryStatus.DELIVERED and done.attempts == 1
    [(headers, body)] = receiver.requests
    assert webhooks.verify(secret, body, headers["Gridx-Signature"])
    event = json.loads(body)
    assert event["id"] == "round:9:bid:1" and event["type"] == "bid.won" and event["data"] == {"bid": 1}
    assert headers["Gridx-Event"] == "bid.won"
    # The secret is stored encrypted, never as given.
    endpoint.refresh_from_db()
    assert secret not in endpoint.secret_encrypted
    # Emitting the same event again delivers nothing new.
    assert (
        market.webhook_event_emit(team=world.acme.team, event="bid.won", event_id="round:9:bid:1", data={})
        == []
    )
    # Events the endpoint did not ask for are not sent.
    other = market.webhook_event_emit(team=world.acme.team, event="round.cleared", event_id="x", data={})
    assert [d.endpoint_id for d in other] == [world.endpoint.pk]


def test_a_failing_endpoint_is_retried_with_backoff_then_given_up_and_shown(world, receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 4
    settings.WEBHOOK_RETRY_BASE_SECONDS = 30
    receiver.status = 500
    _endpoint(world, receiver.url)
    [delivery] = market.webhook_event_emit(team=world.acme.team, event="bid.lost", event_id="e1", data={})
    now = timezone.now()
    gaps = []
    for _ in range(4):
        d = market.webhook_attempt(delivery_id=delivery.pk, now=now)
        assert d is not None
        # Not yet due: a second worker (or an early retry) sends nothing.
        assert market.webhook_attempt(delivery_id=delivery.pk, now=now) is None
        if d.next_attempt_at:
            gaps.append((d.next_attempt_at - now).total_seconds())
            now = d.next_attempt_at
    assert gaps == [30, 60, 120]  # exponential backoff
    d.refresh_from_db()
    assert d.status == DeliveryStatus.FAILED and d.attempts == 4 and len(receiver.requests) == 4
    assert market.webhook_attempt(delivery_id=delivery.pk, now=now + dt.timedelta(days=1)) is None
    log = key_client(world.key_with(["market:read"])).get(f"/api/v1/webhook-deliveries/{delivery.pk}").json()
    assert log["status"] == "failed" and [a["status_code"] for a in log["attempt_log"]] == [500] * 4
    assert log["attempt_log"][0]["response"] == "boom"


def test_an_unreachable_endpoint_records_the_error(world, settings):
    _endpoint(world, "http://127.0.0.1:9/nothing-listens")
    [delivery] = market.webhook_event_emit(team=world.acme.team, event="bid.lost", event_id="e2", data={})
    d = market.webhook_attempt(delivery_id=delivery.pk)
    assert d is not None and d.status == DeliveryStatus.PENDING and d.last_status_code is None
    assert "ConnectError" in d.last_error


def test_a_team_can_replay_a_delivery(world, receiver):
    endpoint, secret = _endpoint(world, receiver.url, events=("bid.lost",))
    [delivery] = market.webhook_event_emit(
        team=world.acme.team, event="bid.lost", event_id="e3", data={"x": 1}
    )
    market.webhook_attempt(delivery_id=delivery.pk)
    bot = key_client(world.key_with(["market:read", "webhooks:write"]))
    reply = bot.post(f"/api/v1/webhook-deliveries/{delivery.pk}/replay")
    assert reply.status_code == 202
    replay = WebhookDelivery.objects.get(pk=reply.json()["id"])
    assert replay.replay_of_id == delivery.pk and replay.event_id == "e3"
    market.webhook_attempt(delivery_id=replay.pk)
    assert len(receiver.requests) == 2
    assert receiver.requests[0][1] == receiver.requests[1][1]  # the same body, freshly signed
    assert webhooks.verify(secret, receiver.requests[1][1], receiver.requests[1][0]["Gridx-Signature"])
    deliveries = bot.get(f"/api/v1/webhooks/{replay.endpoint_id}/deliveries").json()["results"]
    assert {d["id"] for d in deliveries} >= {delivery.pk, replay.pk}


def test_https_is_required_unless_allowed_and_events_are_checked(world, settings):
    settings.WEBHOOKS_ALLOW_HTTP = False
    bot = key_client(world.key_with(["webhooks:write"]))
    reply = bot.post(
        "/api/v1/webhooks", {"url": "http://bot.example/x", "events": ["bid.won"]}, format="json"
    )
    assert reply.status_code == 422 and reply.json()["errors"][0]["code"] == "https_required"
    reply = bot.post(
        "/api/v1/webhooks", {"url": "https://bot.example/x", "events": ["bid.maybe"]}, format="json"
    )
    assert reply.status_code == 422 and reply.json()["errors"][0]["code"] == "unknown_event"
    ok = bot.post("/api/v1/webhooks", {"url": "https://bot.example/x", "events": ["bid.won"]}, format="json")
    assert ok.status_code == 201 and ok.json()["secret"].startswith("whsec_")
    listed = bot.get("/api/v1/webhooks")
    assert listed.status_code == 403  # reading needs market:read; this key only writes


def test_lease_events_are_emitted_once(world, receiver):
    from auctions import services as rounds

    _endpoint(world, receiver.url, events=("lease.started", "lease.ended"))
    with time_machine.travel(world.lease.start + dt.timedelta(minutes=1), tick=False):
        assert rounds.lease_events_emit() == 1
        assert rounds.lease_events_emit() == 0
    with time_machine.travel(world.lease.end + dt.timedelta(minutes=1), tick=False):
        assert rounds.lease_events_emit() == 1
    events = list(WebhookDelivery.objects.filter(endpoint__url=receiver.url).values_list("event", flat=True))
    assert sorted(events) == ["lease.ended", "lease.started"]


def test_the_api_docs_are_served_from_our_own_static_files(client, db):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200 and schema.json()["openapi"].startswith("3.")
    assert "/api/v1/bids/batch" in schema.json()["paths"]
