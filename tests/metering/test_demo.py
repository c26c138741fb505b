"""The demo's simulated agents enrol through the live server and their reports become delivered time."""

from __future__ import annotations

import datetime as dt
import threading

from metering import selectors
from metering.agent.runner import Timing
from metering.demo import agents_run
from metering.models import HostKey, IntervalReport
from tests.metering.conftest import make_lease


def test_demo_agents_enrol_and_deliver_a_running_lease(live_server, seller, tmp_path):
    now = dt.datetime.now(dt.UTC)
    lease = make_lease(seller, now - dt.timedelta(minutes=5), now + dt.timedelta(minutes=5))
    stop = threading.Event()
    worker = threading.Thread(
        target=agents_run,
        kwargs={
            "hosts": [seller.host],
            "server": live_server.url,
            "root": tmp_path,
            "stop": stop,
            "timing": Timing(sample_seconds=0.25, interval_seconds=1.0),
        },
    )
    worker.start()
    try:
        for _ in range(40):
            if IntervalReport.objects.filter(gpu__host=seller.host).count() >= 6:
                break
            stop.wait(0.25)
    finally:
        stop.set()
        worker.join(timeout=10)
    assert HostKey.objects.filter(host=seller.host, status="active").count() == 1
    got = selectors.lease_delivery(lease_id=lease.pk, start=lease.start, end=lease.end)
    assert got.delivered_gpu_seconds >= 4  # 2 GPUs x at least 2 one-second intervals
    assert got.delivered_gpu_seconds <= got.leased_gpu_seconds
