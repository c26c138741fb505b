"""`gridx-agent run` as a real process, killed with SIGKILL again and again, server down for a while.

Truth comes from the scenario: the agent's sim clock is (real time - origin) x scale, with the origin
in the state directory, so the test can place every kill on the scenario timeline.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict

import pytest

from metering.agent.cli import main
from metering.agent.outbox import Outbox
from tests.agent.conftest import GPU_A, GPU_B, START_WALL, write_scenario

SCALE = 20.0
SAMPLE_S = 1.0
INTERVAL_S = 10.0
KILLS = 20


@pytest.mark.slow
def test_kill_9_many_times_with_an_outage_loses_nothing_and_duplicates_nothing(tmp_path, server):
    scenario_path = write_scenario(tmp_path / "scenario.json")
    state = tmp_path / "state"
    enrolled = main(
        ["--state-dir", str(state), "enroll", "--server", server.url, "--token", "tok",
         "--backend", "fake", "--scenario", str(scenario_path)]
    )  # fmt: skip
    assert enrolled == 0
    cmd = [
        sys.executable, "-m", "metering.agent.cli", "--state-dir", str(state), "--log-level", "ERROR", "run",
        "--time-scale", str(SCALE), "--sample-seconds", str(SAMPLE_S), "--interval-seconds", str(INTERVAL_S),
    ]  # fmt: skip
    rng = random.Random(20260101)
    kills: list[float] = []
    logs = []
    for i in range(KILLS):
        if i == 5:
            server.down()  # the network is cut for a third of the run; kills go on
        if i == 12:
            server.up()
        log = tmp_path / f"agent-{i}.log"
        logs.append(log)
        with log.open("w") as err:
            agent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
            time.sleep(rng.uniform(0.4, 1.4))
            kills.append(time.time())
            agent.send_signal(signal.SIGKILL)
            agent.wait(timeout=10)
    # A last, undisturbed run that is stopped cleanly, so everything measured gets delivered.
    with (tmp_path / "agent-last.log").open("w") as err:
        agent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        time.sleep(2.5)
        stopped = time.time()
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0
    for log in logs:
        assert "Traceback" not in log.read_text()

    origin = json.loads((state / "fake-clock.json").read_text())["origin_real"]
    kill_t = sorted((k - origin) * SCALE for k in kills)
    end_t = (stopped - origin) * SCALE

    # Every envelope arrived once, in an unbroken chain, and the outbox is empty.
    outbox = Outbox(state / "outbox.sqlite3")
    status = outbox.status()
    outbox.close()
    host_id = json.loads((state / "config.json").read_text())["host_id"]
    seqs = [e.seq for e in server.accepted]
    assert sorted(seqs) == list(range(1, status.last_seq + 1)), "an envelope is missing or was stored twice"
    assert server.acked(host_id) == status.last_seq and status.queued == 0
    assert server.refusals == []

    by_gpu = defaultdict(list)
    for _, r in server.reports():
        by_gpu[r.gpu_uuid].append(r)
    scenario = __import__("metering.agent.fake", fromlist=["load_scenario"]).load_scenario(scenario_path)
    for uuid in (GPU_A, GPU_B):
        reports = sorted(by_gpu[uuid], key=lambda r: r.start)
        spans = [(r.start.timestamp() - START_WALL, r.end.timestamp() - START_WALL, r) for r in reports]
        # No interval twice, no overlap.
        for (_, a_end, _), (b_start, _, _) in zip(spans, spans[1:], strict=False):
            assert b_start >= a_end - 0.002
        # Each interval's energy is the scenario's energy over that very span: real, and counted once.
        for start, end, r in spans:
            truth = scenario.energy_mj(uuid, start, end)
            assert r.energy_mj == pytest.approx(truth, rel=0.01, abs=20_000), (start, end)
        # No loss: every hole in the timeline begins at most ~two samples before some kill (what the
        # last checkpoint had not yet saved) and ends after it (the restart).
        holes = [(a_end, b_start) for (_, a_end, _), (b_start, _, _) in zip(spans, spans[1:], strict=False)]
        holes = [h for h in holes if h[1] - h[0] > 0.01]
        assert len(holes) <= KILLS
        slack = 2 * SAMPLE_S + 0.3 * SCALE
        for hole_start, hole_end in holes:
            assert any(hole_start >= k - slack and hole_start <= k + 0.1 and hole_end >= k for k in kill_t), (
                f"measured time lost at scenario {hole_start:.1f}-{hole_end:.1f}; kills at {kill_t}"
            )
        covered = sum(r.monotonic_s for r in reports)
        assert covered <= end_t
        assert covered > 0.5 * end_t
