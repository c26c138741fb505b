"""The real agent (fake backend, manual clock) against the live Django server."""

from __future__ import annotations

import datetime as dt
import json
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

from metering import selectors, services
from metering.agent.cli import main as cli_main
from metering.agent.outbox import Outbox
from metering.models import Anomaly, AnomalyKind, Envelope, HostKey, IntervalReport
from tests.metering.conftest import GPU_A, GPU_B, START, make_lease, scenario_dict


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/v1/metering/reports"


def test_after_a_long_outage_every_interval_arrives_exactly_once(make_agent, seller):
    agent = make_agent()
    live_url = agent.uploader.url
    agent.run(600)
    agent.uploader.url = _dead_url()  # the server is unreachable for two hours
    agent.run(2 * 3600)
    assert agent.outbox.status().queued >= 120
    agent.uploader.url = live_url
    agent.run(600)
    agent.uploader.drain()
    for uuid in (GPU_A, GPU_B):
        starts = list(IntervalReport.objects.filter(gpu__uuid=uuid).values_list("start", flat=True))
        assert len(starts) == len(set(starts)) == (600 + 2 * 3600 + 600) // 60
    lease = make_lease(seller, START, START + dt.timedelta(hours=4))
    got = selectors.lease_delivery(lease_id=lease.pk, start=START, end=START + dt.timedelta(hours=4))
    assert got.leased_gpu_seconds == 2 * 4 * 3600
    assert got.delivered_gpu_seconds == 2 * (600 + 2 * 3600 + 600)
    assert got.complete
    assert Envelope.objects.filter(key__agent_id=agent.host_id).count() == agent.outbox.status().last_seq
    services.delivery_compute(lease_id=lease.pk)


def test_a_clock_jump_does_not_stretch_or_shrink_delivered_time(make_agent, seller):
    agent = make_agent(
        faults=[
            {"at": 610, "kind": "wall_jump", "seconds": 3600},
            {"at": 1210, "kind": "wall_jump", "seconds": -7200},
        ]
    )
    agent.run(1800)
    lease = make_lease(seller, START, START + dt.timedelta(minutes=30))
    got = selectors.lease_delivery(lease_id=lease.pk, start=START, end=lease.end)
    assert got.delivered_gpu_seconds == got.leased_gpu_seconds == 2 * 1800
    # Half the lease is half the time, wherever the host's wall clock said the reports were.
    half = selectors.lease_delivery(lease_id=lease.pk, start=START, end=START + dt.timedelta(minutes=15))
    assert half.delivered_gpu_seconds == 2 * 900


def test_an_energy_reset_and_a_driver_reload_give_neither_negative_nor_huge_energy(make_agent, seller):
    agent = make_agent(
        faults=[
            {"at": 122, "kind": "energy_reset", "gpu": GPU_A},
            {"at": 303, "kind": "driver_reload", "duration": 10},
        ]
    )
    agent.run(600)
    lease = make_lease(seller, START, START + dt.timedelta(minutes=10))
    results = {r.gpu.uuid: r for r in services.delivery_compute(lease_id=lease.pk)}
    for uuid in (GPU_A, GPU_B):
        truth = agent.scenario.energy_mj(uuid, 0, 600)
        assert 0.95 * truth <= results[uuid].energy_mj <= truth
        # The minute of the driver reload had the GPUs absent: not delivered.
        assert results[uuid].delivered_ms == 540_000
        assert results[uuid].unhealthy_ms == 60_000
    assert not Anomaly.objects.filter(kind=AnomalyKind.ENERGY_MISMATCH).exists()


@pytest.mark.slow
def test_kill_9_of_a_real_agent_process_loses_and_duplicates_nothing(tmp_path, live_server, seller):
    scenario_path = tmp_path / "scenario.json"
    scenario_path.write_text(json.dumps(scenario_dict()), encoding="utf-8")
    token = services.enrolment_token_create(team=seller.team, actor=None, host_id=seller.host.pk).token
    state = tmp_path / "state"
    assert cli_main(
        ["--state-dir", str(state), "enroll", "--server", live_server.url, "--token", token,
         "--backend", "fake", "--scenario", str(scenario_path)]
    ) == 0  # fmt: skip
    cmd = [
        sys.executable, "-m", "metering.agent.cli", "--state-dir", str(state), "--log-level", "ERROR", "run",
        "--time-scale", "20", "--sample-seconds", "1", "--interval-seconds", "10",
    ]  # fmt: skip
    rng = random.Random(6)
    for _ in range(5):
        agent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 1.5))
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)
    agent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2.0)
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0

    outbox = Outbox(state / "outbox.sqlite3")
    status = outbox.status()
    outbox.close()
    agent_id = json.loads((state / "config.json").read_text())["host_id"]
    seqs = list(Envelope.objects.filter(key__agent_id=agent_id).order_by("seq").values_list("seq", "status"))
    assert seqs == [(s, "accepted") for s in range(1, status.last_seq + 1)]
    assert status.queued == 0
    assert HostKey.objects.get(agent_id=agent_id).acked_seq == status.last_seq
    for uuid in (GPU_A, GPU_B):
        spans = sorted(IntervalReport.objects.filter(gpu__uuid=uuid).values_list("start", "end"))
        assert len(spans) > 5
        assert all(b_start >= a_end for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False))
