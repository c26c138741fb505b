"""Sends the outbox to the server, oldest first, re-signing each attempt; deletes only what is acked."""

from __future__ import annotations

import enum
import http.client
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from metering.agent.outbox import Outbox
from metering.agent.protocol import REPORTS_PATH, Problem, parse_problem, signature_headers

log = logging.getLogger("gridx.agent.uploader")

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 300.0
HTTP_TIMEOUT_S = 15.0

# Refusals after which resending cannot help until a person acts; the agent keeps every envelope
# and retries only at the slowest pace, so nothing is lost once the cause is fixed.
NEEDS_OPERATOR = {
    "unknown_host": "this host is not enrolled at the server: run `gridx-agent enroll` again",
    "key_revoked": "this host's key was revoked: enrol again with a new token",
    "bad_signature": "the server rejects this host's signature: the key file may not be the enrolled one",
    "chain_broken": "the server holds a different previous envelope: was this state directory restored "
    "from a backup or copied from another host?",
    "seq_conflict": "the server already holds a different envelope with this sequence number: was this "
    "state directory restored from a backup or copied from another host?",
}


class Outcome(enum.Enum):
    EMPTY = "empty"  # nothing to send
    SENT = "sent"  # the server took it (accepted, duplicate, or refused for good and consumed)
    RETRY = "retry"  # transient failure: back off and try again
    BLOCKED = "blocked"  # needs an operator: retry at the slowest pace


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


Transport = Callable[[str, bytes, dict[str, str]], Response]


def urllib_transport(url: str, body: bytes, headers: dict[str, str]) -> Response:
    """POST with the standard library; HTTP error statuses are returned, network errors raised."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as answer:  # noqa: S310
            return Response(answer.status, answer.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Response(exc.code, exc.read())


class Uploader:
    """Drains one outbox to one server. Runs on its own thread in `gridx-agent run`."""

    def __init__(
        self,
        *,
        outbox: Outbox,
        server_url: str,
        host_id: str,
        private_key: Ed25519PrivateKey,
        transport: Transport = urllib_transport,
        signing_clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.url = server_url.rstrip("/") + REPORTS_PATH
        self.host_id = host_id
        self.key = private_key
        self.transport = transport
        # The signing time is always the host's real clock: the server compares it with its own.
        self.signing_clock = signing_clock
        self.backoff = BACKOFF_START_S
        # Highest seq the server said it stored in this session. Normally equal to the acked seq;
        # it runs ahead only if the server lost envelopes this agent had already seen acked (a
        # restored server database), and then it keeps us from resending the same one forever.
        self.stored_through = 0

    def send_once(self) -> Outcome:
        """Try to deliver the oldest envelope the server has not stored yet."""
        queued = self.outbox.next_after(self.stored_through)
        if queued is None:
            return Outcome.EMPTY
        headers = signature_headers(self.key, self.host_id, int(self.signing_clock()), queued.body)
        try:
            answer = self.transport(self.url, queued.body, headers)
        except (OSError, http.client.HTTPException) as exc:
            # URLError, ConnectionRefusedError and TimeoutError are all OSErrors.
            reason = getattr(exc, "reason", exc)
            self._error(f"server unreachable at {self.url}: {reason}")
            return Outcome.RETRY
        if 200 <= answer.status < 300:
            return self._accepted(queued.seq, answer)
        return self._refused(queued.seq, parse_problem(answer.status, answer.body))

    def _accepted(self, seq: int, answer: Response) -> Outcome:
        try:
            acked = json.loads(answer.body)["acked_seq"]
            if not isinstance(acked, int) or isinstance(acked, bool):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            self._error(f"server answered HTTP {answer.status} without an integer acked_seq; will retry")
            return Outcome.RETRY
        self.outbox.ack(acked)
        self.stored_through = max(self.stored_through, seq, acked)
        if acked < seq:
            self._error(
                f"server stored envelope {seq} but acknowledges only up to {acked}: it is missing "
                "envelopes this agent no longer has; they must be recorded as a gap at the server"
            )
        self.backoff = BACKOFF_START_S
        return Outcome.SENT

    def _refused(self, seq: int, problem: Problem) -> Outcome:
        if problem.acked_seq is not None and problem.acked_seq >= seq:
            # The server consumed the sequence number while refusing the content (unknown GPU, an
            # interval in the future, ...): keep a copy for the operator, then move on.
            self.outbox.refuse(seq, problem.code, problem.describe())
            self.outbox.ack(problem.acked_seq)
            self.stored_through = max(self.stored_through, problem.acked_seq)
            self._error(f"server refused envelope {seq} for good: {problem.describe()}")
            self.backoff = BACKOFF_START_S
            return Outcome.SENT
        if problem.acked_seq is not None:
            self.outbox.ack(problem.acked_seq)
        if problem.code in NEEDS_OPERATOR:
            self._error(f"{problem.describe()}\n  {NEEDS_OPERATOR[problem.code]}")
            self.backoff = BACKOFF_MAX_S
            return Outcome.BLOCKED
        self._error(f"server refused envelope {seq}, will retry: {problem.describe()}")
        return Outcome.RETRY

    def _error(self, message: str) -> None:
        log.error("%s", message)
        self.outbox.record_error(message)

    def drain(self, limit: int | None = None) -> Outcome:
        """Send until the outbox is empty or a send fails; the last outcome."""
        sent = 0
        while limit is None or sent < limit:
            outcome = self.send_once()
            if outcome is not Outcome.SENT:
                return outcome
            sent += 1
        return Outcome.SENT

    def next_delay(self, outcome: Outcome) -> float | None:
        """Seconds to wait after `outcome`, with jitter so a fleet does not retry in lockstep."""
        if outcome is Outcome.EMPTY or outcome is Outcome.SENT:
            return None  # wait for the runner's wake-up
        delay = self.backoff
        self.backoff = min(BACKOFF_MAX_S, self.backoff * 2)
        return delay * random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not security)

    def run(self, stop: threading.Event, wake: threading.Event, idle_s: float = 30.0) -> None:
        """Thread body: drain, then sleep until woken (new envelope), the backoff ends, or stop."""
        while not stop.is_set():
            outcome = self.drain()
            delay = self.next_delay(outcome)
            if delay is None:
                wake.wait(idle_s)
                wake.clear()
            else:
                # During a backoff a new envelope must not cut the wait short: it waits its turn.
                stop.wait(delay)
