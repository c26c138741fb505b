"""Simulated agents for the demo: one fake-backend gridx-agent per demo seller host, in one process.

Each host gets a scenario with its declared GPUs (busy, with a little noise) and a state directory
under var/agents/; the agent library enrols it over HTTP with a fresh token and then samples and
reports on the real clock, exactly as `gridx-agent run --backend fake` would, so the demo's leases
get verified delivered seconds.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from marketplace.models import Host
from metering import services
from metering.agent.cli import make_backend
from metering.agent.enroll import EnrollError, enroll
from metering.agent.outbox import Outbox
from metering.agent.runner import Runner, Timing
from metering.agent.state import StateDir
from metering.agent.uploader import Uploader
from metering.models import HostKey, KeyStatus

log = logging.getLogger(__name__)

POWER_W = {"H100": 700, "H200": 700, "B200": 1000, "A100": 400, "L40S": 350, "MI300X": 750}


@dataclass
class DemoAgent:
    hostname: str
    runner: Runner
    uploader: Uploader


def demo_scenario(host: Host, seed: int) -> dict[str, object]:
    """A busy host: each GPU ramps between 40% and 100% utilisation, power following."""
    rnd = random.Random(seed)  # noqa: S311 - demo curves, not secrets
    gpus = []
    for gpu in host.gpus.select_related("gpu_model").order_by("uuid"):
        peak = POWER_W.get(gpu.gpu_model.name.split("-")[0], 500)
        curve = [[t, rnd.randint(40, 100)] for t in range(0, 86400 * 7, 900)]
        gpus.append(
            {
                "uuid": gpu.uuid,
                "name": gpu.gpu_model.display_name,
                "memory_bytes": gpu.gpu_model.memory_gb * 2**30,
                "util_pct": curve,
                "power_w": [[t, 60 + (peak - 60) * u / 100] for t, u in curve],
                "processes": 1,
            }
        )
    return {"gpus": gpus, "faults": []}


def _enrolled(state: StateDir) -> bool:
    if not state.config_path.exists():
        return False
    host_id = json.loads(state.config_path.read_text(encoding="utf-8")).get("host_id")
    return HostKey.objects.filter(agent_id=host_id, status=KeyStatus.ACTIVE).exists()


def agent_start(*, host: Host, server: str, root: Path, timing: Timing) -> DemoAgent:
    """Enrol (again, if the database was reset) and wire one host's simulated agent."""
    state = StateDir(root / host.hostname)
    state.ensure()
    scenario = state.path / "scenario.json"
    scenario.write_text(json.dumps(demo_scenario(host, host.pk)), encoding="utf-8")
    if not _enrolled(state):
        backend, _ = make_backend("fake", str(scenario), time_scale=0)
        token = services.enrolment_token_create(team=host.cluster.team, actor=None, host_id=host.pk).token
        enroll(
            state=state,
            server_url=server,
            token=token,
            gpus=backend.inventory(),
            backend="fake",
            scenario=str(scenario),
            force=True,
        )
    config = state.load_config()
    backend, clock = make_backend("fake", str(scenario), state=state, time_scale=1.0)
    runner = Runner(
        backend=backend,
        clock=clock,
        outbox=Outbox(state.outbox_path),
        host_id=config.host_id,
        uuids=list(config.gpu_uuids),
        timing=timing,
    )
    uploader = Uploader(
        outbox=Outbox(state.outbox_path),
        server_url=server,
        host_id=config.host_id,
        private_key=state.load_key(),
    )
    return DemoAgent(host.hostname, runner, uploader)


def agents_run(*, hosts: list[Host], server: str, root: Path, stop: threading.Event, timing: Timing) -> None:
    """Enrol every host (waiting for the server to come up), then tick them all until `stop`."""
    agents: list[DemoAgent] = []
    pending = list(hosts)
    while pending and not stop.is_set():
        host = pending[0]
        try:
            agents.append(agent_start(host=host, server=server, root=root, timing=timing))
            pending.pop(0)
        except EnrollError as exc:
            log.info("waiting to enrol %s: %s", host.hostname, exc)
            stop.wait(3)
    log.info("%d simulated agent(s) reporting to %s", len(agents), server)
    next_tick = time.monotonic()
    while not stop.is_set():
        for agent in agents:
            try:
                agent.runner.tick()
                agent.uploader.drain(limit=20)
            except Exception:  # one host's trouble must not stop the others' metering
                log.exception("demo agent %s", agent.hostname)
        next_tick += timing.sample_seconds
        stop.wait(max(0.0, next_tick - time.monotonic()))
