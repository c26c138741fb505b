"""`gridx-agent enroll`: create the host key, register it and the host's GPUs with the server."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from metering.agent import AGENT_VERSION
from metering.agent.protocol import (
    ENROLL_PATH,
    EnrollRequest,
    GpuInfo,
    Problem,
    parse_problem,
    public_key_b64,
)
from metering.agent.state import AgentConfig, StateDir

ENROLL_TIMEOUT_S = 30.0


class EnrollError(Exception):
    """Enrolment failed; the message is complete and meant for the operator."""

    def __init__(self, message: str, problem: Problem | None = None) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True)
class Enrolled:
    host_id: str
    gpu_uuids: tuple[str, ...]


def _post_json(url: str, payload: dict[str, object]) -> tuple[int, bytes]:
    request = urllib.request.Request(  # noqa: S310 (the URL is the operator's own server)
        url,
        data=json.dumps(payload).encode("utf-8"),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=ENROLL_TIMEOUT_S) as answer:  # noqa: S310
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def enroll(
    *,
    state: StateDir,
    server_url: str,
    token: str,
    gpus: list[GpuInfo],
    backend: str,
    scenario: str | None = None,
    force: bool = False,
) -> Enrolled:
    """Register this host; on success the key and config are in `state`, else EnrollError."""
    if not server_url.startswith(("http://", "https://")):
        raise EnrollError(f"--server must be an http:// or https:// URL, got {server_url!r}")
    if not gpus:
        raise EnrollError("no GPU found on this host: there is nothing to enrol")
    if state.config_path.exists() and not force:
        current = state.load_config()
        raise EnrollError(
            f"this host is already enrolled as {current.host_id} at {current.server_url}; "
            "pass --force to enrol again with a new key"
        )
    key = state.create_key()
    request = EnrollRequest(
        token=token,
        public_key=public_key_b64(key),
        hostname=socket.gethostname(),
        agent_version=AGENT_VERSION,
        gpus=tuple(gpus),
    )
    url = server_url.rstrip("/") + ENROLL_PATH
    try:
        status, body = _post_json(url, request.to_json())
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        raise EnrollError(f"cannot reach the server at {url}: {reason}") from None
    if status != 201:
        problem = parse_problem(status, body)
        raise EnrollError(f"enrolment refused: {problem.describe()}", problem)
    try:
        answer = json.loads(body)
        host_id = answer["host_id"]
        if not isinstance(host_id, str) or not host_id:
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise EnrollError(f"the server accepted the enrolment but sent no host_id: {body[:200]!r}") from None
    accepted = answer.get("gpus")
    uuids = tuple(accepted) if isinstance(accepted, list) else tuple(g.uuid for g in gpus)
    _set_aside_old_outbox(state)
    state.save_config(
        AgentConfig(
            server_url=server_url, host_id=host_id, gpu_uuids=uuids, backend=backend, scenario=scenario
        )
    )
    return Enrolled(host_id=host_id, gpu_uuids=uuids)


def _set_aside_old_outbox(state: StateDir) -> None:
    """A new enrolment starts a new chain; an old outbox belongs to the old host id, so keep it aside."""
    for suffix in ("", "-wal", "-shm"):
        old = state.outbox_path.with_name(state.outbox_path.name + suffix)
        if old.exists():
            old.rename(old.with_name(f"{old.name}.before-{int(time.time())}"))
