"""Building and posting gridx.metering/v1 requests by hand, for the refusal and property tests."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.test import Client

from marketplace.models import Host, Team
from metering import services
from metering.agent.protocol import (
    ENROLL_PATH,
    GENESIS_HASH,
    REPORTS_PATH,
    EnrollRequest,
    GpuInfo,
    IntervalReport,
    envelope_body,
    envelope_hash,
    public_key_b64,
    signature_headers,
)


def report(uuid: str, start: dt.datetime, seconds: float = 60.0, **overrides: Any) -> IntervalReport:
    values: dict[str, Any] = {
        "gpu_uuid": uuid,
        "start": start,
        "end": start + dt.timedelta(seconds=seconds),
        "monotonic_s": seconds,
        "present": True,
        "healthy": True,
        "util_mean_pct": 50.0,
        "util_max_pct": 90.0,
        "mem_used_max_bytes": 10**9,
        "energy_mj": int(300_000 * seconds),  # 300 W
        "power_mean_mw": 300_000,
        "xid_errors": (),
        "ecc_uncorrected_delta": 0,
        "processes_max": 1,
        "samples": 12,
        "energy_resets": 0,
        "clock_step_s": 0.0,
    }
    values.update(overrides)
    return IntervalReport(**values)


def gpu_info(uuid: str) -> GpuInfo:
    return GpuInfo(uuid, "NVIDIA H100 80GB HBM3", 85520809984, None, "00000000:18:00.0", "550.54.15")


@dataclass
class WireHost:
    """An enrolled agent as the server sees it: key, wire id and chain head."""

    client: Client
    key: Ed25519PrivateKey
    agent_id: str
    seq: int = 0
    prev: str = GENESIS_HASH
    bodies: dict[int, bytes] = field(default_factory=dict)

    def envelope(
        self, reports: list[IntervalReport], *, seq: int | None = None, prev: str | None = None
    ) -> bytes:
        """The next envelope of the chain (or one at a chosen seq/prev_hash)."""
        chained = seq is None
        seq = self.seq + 1 if seq is None else seq
        body = envelope_body(
            host_id=self.agent_id,
            seq=seq,
            prev_hash=self.prev if prev is None else prev,
            agent_version="0.1.0",
            created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            reports=reports,
        )
        if chained:
            self.seq, self.prev = seq, envelope_hash(body)
        self.bodies[seq] = body
        return body

    def post(
        self, body: bytes, *, timestamp: float | None = None, key: Ed25519PrivateKey | None = None
    ) -> Any:
        ts = int(time.time() if timestamp is None else timestamp)
        headers = signature_headers(key or self.key, self.agent_id, ts, body)
        return post_raw(self.client, body, headers)


def post_raw(client: Client, body: bytes, headers: dict[str, str]) -> Any:
    extra = {k: v for k, v in headers.items() if k != "Content-Type"}
    return client.post(REPORTS_PATH, data=body, content_type="application/json", headers=extra)


def enroll(client: Client, token: str, uuids: list[str], key: Ed25519PrivateKey | None = None) -> Any:
    key = key or Ed25519PrivateKey.generate()
    request = EnrollRequest(token, public_key_b64(key), "gpu-01", "0.1.0", tuple(gpu_info(u) for u in uuids))
    return client.post(ENROLL_PATH, data=json.dumps(request.to_json()), content_type="application/json")


def wire_host(client: Client, team: Team, host: Host) -> WireHost:
    """Enrol a fresh key for `host` through the endpoint, with every declared GPU."""
    token = services.enrolment_token_create(team=team, actor=None, host_id=host.pk).token
    key = Ed25519PrivateKey.generate()
    answer = enroll(client, token, list(host.gpus.values_list("uuid", flat=True)), key)
    assert answer.status_code == 201, answer.content
    return WireHost(client=client, key=key, agent_id=answer.json()["host_id"])
