"""Fixtures for the agent: a live reference server, scenarios, and an agent on a manual clock.

No database and no GPU: these tests run with or without pytest-django (`-p no:django`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from metering.agent.clock import SimClock
from metering.agent.enroll import enroll
from metering.agent.fake import FakeBackend, Scenario, parse_scenario
from metering.agent.outbox import Outbox
from metering.agent.runner import Runner, Timing
from metering.agent.state import StateDir
from metering.agent.uploader import Uploader
from tests.agent.refserver import RefServer

START_WALL = 1_767_225_600.0  # 2026-01-01T00:00:00Z: far enough in the past for "not in the future"
GPU_A = "GPU-aaaaaaaa-0000-4000-8000-000000000001"
GPU_B = "GPU-bbbbbbbb-0000-4000-8000-000000000002"


def scenario_dict(faults: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "start_wall": "2026-01-01T00:00:00Z",
        "gpus": [
            {
                "uuid": GPU_A,
                "util_pct": [[0, 20], [600, 100]],
                "power_w": [[0, 100], [600, 700]],
                "processes": 1,
            },
            {"uuid": GPU_B, "util_pct": 50, "power_w": 300, "unsupported": ["ecc", "serial"]},
        ],
        "faults": faults or [],
    }


@pytest.fixture
def server() -> Iterator[RefServer]:
    srv = RefServer(declared={"tok": {GPU_A, GPU_B}}).start()
    yield srv
    srv.stop()


@dataclass
class Agent:
    """The agent's parts wired as `gridx-agent run` wires them, on a manual clock."""

    state: StateDir
    scenario: Scenario
    clock: SimClock
    backend: FakeBackend
    outbox: Outbox
    runner: Runner
    uploader: Uploader
    host_id: str

    def run(self, seconds: float, *, send: bool = True) -> None:
        """Let `seconds` of scenario time pass, sampling on schedule (and uploading after each tick)."""
        steps = round(seconds / self.runner.timing.sample_seconds)
        for _ in range(steps):
            self.clock.advance(self.runner.timing.sample_seconds)
            self.runner.tick()
            if send:
                self.uploader.drain()


@pytest.fixture
def make_agent(tmp_path: Path, server: RefServer) -> Iterator[Any]:
    opened: list[Outbox] = []

    def make(faults: list[dict[str, Any]] | None = None, timing: Timing | None = None) -> Agent:
        scenario = parse_scenario(scenario_dict(faults))
        clock = SimClock(start_wall=START_WALL, wall_steps=scenario.wall_steps())
        backend = FakeBackend(scenario, clock)
        state = StateDir(tmp_path / "state")
        done = enroll(
            state=state, server_url=server.url, token="tok", gpus=backend.inventory(), backend="fake"
        )
        outbox = Outbox(state.outbox_path)
        opened.append(outbox)
        runner = Runner(
            backend=backend,
            clock=clock,
            outbox=outbox,
            host_id=done.host_id,
            uuids=list(done.gpu_uuids),
            timing=timing or Timing(),
        )
        uploader = Uploader(
            outbox=outbox, server_url=server.url, host_id=done.host_id, private_key=state.load_key()
        )
        runner.tick()  # the first sample: the baseline at scenario time 0
        return Agent(state, scenario, clock, backend, outbox, runner, uploader, done.host_id)

    yield make
    for outbox in opened:
        outbox.close()


def write_scenario(path: Path, faults: list[dict[str, Any]] | None = None) -> Path:
    path.write_text(json.dumps(scenario_dict(faults)), encoding="utf-8")
    return path
