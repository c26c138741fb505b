"""A reference metering server: the gridx.metering/v1 contract in ~200 lines of stdlib.

It exists so the agent can be tested against a live server before the Django one is written, and
it is the executable reading of docs/metering-agent.md for whoever writes that one: same checks, in
the same order, with the same codes. It keeps everything in memory.

    server = RefServer(declared={"tok": {"GPU-a", "GPU-b"}}); server.start()
    ... server.url ...; server.down(); server.up(); server.stop()
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from metering.agent.protocol import (
    CLOCK_SKEW_TOLERANCE_S,
    ENROLL_PATH,
    REPORTS_PATH,
    Envelope,
    FieldError,
    Problem,
    ProtocolError,
    SignatureError,
    parse_enroll_request,
    parse_envelope,
    parse_signed_headers,
    verify_request,
)


@dataclass
class Token:
    gpus: set[str]
    expires: float
    used: bool = False


@dataclass
class Host:
    public_key: str
    gpus: set[str]
    revoked: bool = False
    hashes: dict[int, str] = field(default_factory=dict)  # seq -> envelope hash (accepted or consumed)
    acked: int = 0  # highest contiguous seq
    gaps_seen: set[int] = field(default_factory=set)


class RefServer:
    def __init__(
        self,
        *,
        declared: dict[str, set[str]] | None = None,
        token_ttl_s: float = 3600,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.tokens = {t: Token(set(g), time.time() + token_ttl_s) for t, g in (declared or {}).items()}
        self.hosts: dict[str, Host] = {}
        self.gpu_owner: dict[str, str] = {}
        self.accepted: list[Envelope] = []  # every envelope stored, in arrival order
        self.refusals: list[tuple[int, str]] = []  # (HTTP status, code)
        self.duplicates = 0
        self.next_prev_hash: dict[tuple[str, int], str] = {}  # (host, seq) -> that envelope's prev_hash
        self.requests = 0
        self.now = now
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.port = 0

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RefServer:
        self.up()
        return self

    def up(self) -> None:
        """Listen (again, on the same port once one was chosen)."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, payload = server.handle(self.path, dict(self.headers.items()), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                ctype = "application/json" if status < 400 else "application/problem+json"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def down(self) -> None:
        """Stop listening: connections are refused, as when the server is unreachable."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    stop = down

    # --- what tests look at ------------------------------------------------------------------------

    def reports(self) -> list[tuple[str, Any]]:
        """(host_id, IntervalReport) of every stored envelope, in arrival order."""
        with self.lock:
            return [(e.host_id, r) for e in self.accepted for r in e.reports]

    def acked(self, host_id: str) -> int:
        return self.hosts[host_id].acked

    # --- the contract --------------------------------------------------------------------------------

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests += 1
            if path == ENROLL_PATH:
                status, payload = self._enroll(body)
            elif path == REPORTS_PATH:
                status, payload = self._reports(headers, body)
            else:
                status, payload = 404, Problem(404, "not_found", "No such endpoint").to_json()
            if status >= 400:
                self.refusals.append((status, str(payload.get("code"))))
            return status, payload

    def _enroll(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            request = parse_enroll_request(body)
        except ProtocolError as exc:
            return 400, _problem(
                400, "malformed", "Malformed enrolment", errors=[(exc.field, exc.code, exc.message)]
            )
        token = self.tokens.get(request.token)
        if token is None:
            return 401, _problem(401, "token_invalid", "Unknown enrolment token")
        if token.used:
            return 410, _problem(410, "token_used", "This enrolment token was already used")
        if time.time() > token.expires:
            return 410, _problem(410, "token_expired", "This enrolment token has expired")
        errors = []
        for i, gpu in enumerate(request.gpus):
            if gpu.uuid in self.gpu_owner:
                errors.append((f"gpus[{i}].uuid", "gpu_taken", f"{gpu.uuid} is enrolled on another host"))
            elif gpu.uuid not in token.gpus:
                errors.append(
                    (
                        f"gpus[{i}].uuid",
                        "not_declared",
                        f"{gpu.uuid} is not in the seller's declared inventory",
                    )
                )
        found = {g.uuid for g in request.gpus}
        for uuid in sorted(token.gpus - found):
            errors.append(("gpus", "missing", f"declared GPU {uuid} was not found on this host"))
        if errors:
            return 422, _problem(
                422, "gpu_mismatch", "The GPUs found do not match the declared inventory", errors=errors
            )
        token.used = True
        host_id = "h_" + secrets.token_hex(8)
        self.hosts[host_id] = Host(public_key=request.public_key, gpus=found)
        for uuid in found:
            self.gpu_owner[uuid] = host_id
        return 201, {"host_id": host_id, "gpus": sorted(found)}

    def _reports(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        # 1. Who claims to be sending, and can they prove it (signature before anything else).
        try:
            signed = parse_signed_headers(headers)
        except SignatureError as exc:
            return 400, _problem(400, exc.code, "Missing or malformed signature headers", detail=str(exc))
        host = self.hosts.get(signed.host_id)
        if host is None:
            return 401, _problem(401, "unknown_host", "Unknown host", detail=signed.host_id)
        if host.revoked:
            return 403, _problem(403, "key_revoked", "This host's key was revoked")
        try:
            verify_request(host.public_key, signed, body, now=self.now())
        except SignatureError as exc:
            return 401, _problem(401, exc.code, "Signature refused", detail=str(exc))
        # 2. From here the body is the host's own: a refusal of its content consumes the seq.
        try:
            env = parse_envelope(body)
        except ProtocolError as exc:
            seq = _seq_of(body)
            if seq is not None:
                self._consume(host, seq, "", None)
            return 400, _problem(
                400,
                "malformed",
                "Malformed envelope",
                errors=[(exc.field, exc.code, exc.message)],
                acked=host.acked,
            )
        if env.host_id != signed.host_id:
            return 400, _problem(400, "host_mismatch", "Body host_id differs from the Gridx-Host header")
        # 3. Dedupe on (host, seq): the same bytes again are acknowledged, other bytes are a conflict.
        if env.seq in host.hashes:
            if host.hashes[env.seq] == env.hash:
                self.duplicates += 1
                return 200, {"acked_seq": host.acked, "status": "duplicate"}
            return 409, _problem(
                409, "seq_conflict", "Another envelope holds this sequence number", acked=host.acked
            )
        # 4. The chain, where the neighbours are known; a missing neighbour is a gap, not an error.
        prev = host.hashes.get(env.seq - 1)
        if prev and prev != env.prev_hash:  # "" = consumed unparsed: nothing to compare with
            return 409, _problem(
                409, "chain_broken", "prev_hash does not match envelope seq-1", acked=host.acked
            )
        nxt = self.next_prev_hash.get((env.host_id, env.seq + 1))
        if nxt is not None and nxt != env.hash:
            return 409, _problem(
                409, "chain_broken", "envelope seq+1 does not chain to this one", acked=host.acked
            )
        if env.seq > 1 and prev is None:
            host.gaps_seen.add(env.seq - 1)
        # 5. The reports themselves.
        errors = []
        horizon = datetime.fromtimestamp(self.now(), UTC) + timedelta(seconds=CLOCK_SKEW_TOLERANCE_S)
        for i, r in enumerate(env.reports):
            owner = self.gpu_owner.get(r.gpu_uuid)
            if owner is None:
                errors.append((f"reports[{i}].gpu_uuid", "unknown_gpu", f"{r.gpu_uuid} is not enrolled"))
            elif owner != env.host_id:
                errors.append(
                    (f"reports[{i}].gpu_uuid", "foreign_gpu", f"{r.gpu_uuid} belongs to another host")
                )
            elif r.end > horizon:
                errors.append((f"reports[{i}].end", "interval_in_future", "the interval ends in the future"))
        if errors:
            self._consume(host, env.seq, env.hash, env)
            return 422, _problem(
                422, errors[0][1], "Reports refused", errors=errors, acked=host.acked, detail=f"seq {env.seq}"
            )
        self._consume(host, env.seq, env.hash, env)
        self.accepted.append(env)
        return 200, {"acked_seq": host.acked, "status": "accepted"}

    def _consume(self, host: Host, seq: int, digest: str, env: Envelope | None) -> None:
        host.hashes[seq] = digest
        if env is not None:
            self.next_prev_hash[(env.host_id, seq)] = env.prev_hash
        while host.acked + 1 in host.hashes:
            host.acked += 1


def _seq_of(body: bytes) -> int | None:
    try:
        seq = json.loads(body)["seq"]
    except (ValueError, KeyError, TypeError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1 else None


def _problem(
    status: int,
    code: str,
    title: str,
    *,
    detail: str = "",
    errors: list[tuple[str, str, str]] | None = None,
    acked: int | None = None,
) -> dict[str, Any]:
    return Problem(
        status=status,
        code=code,
        title=title,
        detail=detail,
        errors=tuple(FieldError(*e) for e in errors or []),
        acked_seq=acked,
    ).to_json()
