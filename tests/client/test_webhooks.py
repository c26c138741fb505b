"""The client's webhook check agrees with the server's signer, byte for byte and second for second."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridx_client import GridxClient
from gridx_client import webhooks as client_hooks
from marketplace import services as market
from marketplace import webhooks as server_hooks
from tests.client.conftest import LiveMarket

secrets_ = st.text(min_size=1, max_size=60)
bodies = st.binary(max_size=2000)
times = st.integers(min_value=0, max_value=2**40)


@given(secret=secrets_, body=bodies, t=times)
def test_what_the_server_signs_the_client_verifies_and_the_other_way_round(secret, body, t):
    assert client_hooks.verify(secret, body, server_hooks.sign(secret, body, timestamp=t), now=t) == t
    assert server_hooks.verify(secret, body, client_hooks.sign(secret, body, timestamp=t), now=t) == t
    assert client_hooks.sign(secret, body, timestamp=t) == server_hooks.sign(secret, body, timestamp=t)


@given(secret=secrets_, body=bodies, t=times, flip=st.integers(min_value=0, max_value=2000))
def test_an_altered_body_fails_in_both(secret, body, t, flip):
    header = server_hooks.sign(secret, body, timestamp=t)
    altered = bytearray(body or b"\x00")
    altered[flip % len(altered)] ^= 0x01
    if bytes(altered) == body:
        return
    with pytest.raises(client_hooks.SignatureError):
        client_hooks.verify(secret, bytes(altered), header, now=t)
    with pytest.raises(server_hooks.SignatureError):
        server_hooks.verify(secret, bytes(altered), header, now=t)


@pytest.mark.parametrize(("age", "accepted"), [(300, True), (301, False), (-300, True), (-301, False)])
def test_both_apply_the_same_five_minute_tolerance(age, accepted):
    header = server_hooks.sign("whsec_x", b"{}", timestamp=1_000_000)
    now = 1_000_000 + age
    outcomes = []
    for verify, error in (
        (client_hooks.verify, client_hooks.SignatureError),
        (server_hooks.verify, server_hooks.SignatureError),
    ):
        try:
            verify("whsec_x", b"{}", header, now=now)
            outcomes.append(True)
        except error:
            outcomes.append(False)
    assert outcomes == [accepted, accepted]


@pytest.mark.parametrize(
    "header", ["", "v1=abc", "t=notanumber,v1=abc", "t=1000000", "t=1000000,v1=deadbeef", "nonsense"]
)
def test_malformed_or_wrong_headers_are_refused_by_both(header):
    with pytest.raises(client_hooks.SignatureError):
        client_hooks.verify("whsec_x", b"{}", header, now=1_000_000)
    with pytest.raises(server_hooks.SignatureError):
        server_hooks.verify("whsec_x", b"{}", header, now=1_000_000)


def test_a_second_signature_for_a_rotating_secret_is_accepted_by_both():
    good = server_hooks.sign("whsec_new", b"{}", timestamp=1_000_000)
    header = f"{good},v1={'0' * 64}"
    assert client_hooks.verify("whsec_new", b"{}", header, now=1_000_000) == 1_000_000
    assert server_hooks.verify("whsec_new", b"{}", header, now=1_000_000) == 1_000_000


class Receiver:
    """A bot's webhook endpoint on loopback that keeps each raw body and its signature header."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((body, self.headers[client_hooks.SIGNATURE_HEADER]))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/gridx"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_a_real_delivery_and_its_replay_verify_with_the_secret_the_client_was_given(
    client: GridxClient, live_market: LiveMarket, receiver: Receiver, settings
):
    settings.WEBHOOKS_ALLOW_HTTP = True
    endpoint = client.create_webhook(receiver.url, ["bid.won", "round.cleared"], description="bot")
    assert endpoint.secret and endpoint.secret.startswith("whsec_")
    (delivery,) = market.webhook_event_emit(
        team=live_market.buyer.team, event="bid.won", event_id="round:1:bid:1", data={"bid": 1}
    )
    market.webhook_attempt(delivery_id=delivery.pk)

    listed = list(client.deliveries(endpoint.id))
    replay = client.replay_delivery(listed[0].id)
    market.webhook_attempt(delivery_id=replay.id)

    assert [d.status for d in listed] == ["delivered"]
    assert client.delivery(listed[0].id).attempt_log[0].status_code == 204
    assert replay.replay_of == listed[0].id
    assert len(receiver.received) == 2
    for body, header in receiver.received:
        assert client_hooks.verify(endpoint.secret, body, header) > 0
        assert body == client.delivery(listed[0].id).payload.encode()  # type: ignore[union-attr]
    with pytest.raises(client_hooks.SignatureError):
        client_hooks.verify("whsec_someone_else", receiver.received[0][0], receiver.received[0][1])
    assert [w.id for w in client.webhooks()] == [endpoint.id]
    assert client.delete_webhook(endpoint.id).active is False
