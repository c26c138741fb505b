"""The real agent (fake backend, manual clock) against the live Django server."""

from __future__ import annotations

import datetime as dt
import socket

from metering import selectors, services
from metering.models import Envelope, IntervalReport
from tests.metering.conftest import GPU_A, GPU_B, START, make_lease


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/v1/metering/reports"


def test_after_a_long_outage_every_interval_arrives_exactly_once(make_agent, seller):
    agent = make_agent()
    live_url = agent.uploader.url
    agent.run(600)
    agent.uploader.url = _dead_url()  # the server is unreachable for three hours
    agent.run(3 * 3600)
    assert agent.outbox.status().queued >= 180
    agent.uploader.url = live_url
    agent.run(600)
    agent.uploader.drain()
    for uuid in (GPU_A, GPU_B):
        starts = list(IntervalReport.objects.filter(gpu__uuid=uuid).values_list("start", flat=True))
        assert len(starts) == len(set(starts)) == (600 + 3 * 3600 + 600) // 60
    lease = make_lease(seller, START, START + dt.timedelta(hours=4))
    got = selectors.lease_delivery(lease_id=lease.pk, start=START, end=START + dt.timedelta(hours=4))
    assert got.leased_gpu_seconds == 2 * 4 * 3600
    assert got.delivered_gpu_seconds == 2 * (600 + 3 * 3600 + 600)
    assert got.complete
    assert Envelope.objects.filter(key__agent_id=agent.host_id).count() == agent.outbox.status().last_seq
    services.delivery_compute(lease_id=lease.pk)
