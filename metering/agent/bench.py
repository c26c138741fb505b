"""`gridx-agent bench-cpu`: the agent's own CPU use, measured on the real program.

The agent runs as a child process (`python -m metering.agent.cli run`, fake backend, N GPUs,
the default intervals) against a local sink that acknowledges every envelope, so sampling,
aggregation, SQLite writes, signing and HTTP are all counted. CPU time comes from the kernel
(getrusage of the finished child). Two baselines run the same way: an idle Python process
sleeping as long (interpreter cost), and a process that only imports the agent (start-up cost,
which the steady-state figure subtracts).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from metering.agent.cli import say
from metering.agent.state import AgentConfig, StateDir


class _Sink(BaseHTTPRequestHandler):
    """Acknowledges every envelope it receives; verifies nothing (not what is being measured)."""

    received = 0

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        seq = json.loads(body)["seq"]
        type(self).received += 1
        answer = json.dumps({"acked_seq": seq}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return


def _child_cpu(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one child process run to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)  # noqa: S603
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def run_benchmark(
    *, gpus: int, seconds: float, sample_seconds: float, interval_seconds: float, time_scale: float
) -> dict[str, float]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    python = sys.executable
    env = dict(os.environ)
    try:
        with tempfile.TemporaryDirectory(prefix="gridx-bench-") as tmp:
            state = StateDir(Path(tmp))
            state.create_key()
            uuids = tuple(f"GPU-00000000-0000-4000-8000-{i:012d}" for i in range(gpus))
            state.save_config(AgentConfig(url, "bench-host", uuids, backend="fake", scenario=f"demo:{gpus}"))
            agent_cpu, agent_wall = _child_cpu(
                [
                    python, "-m", "metering.agent.cli", "--state-dir", tmp, "--log-level", "WARNING", "run",
                    "--sample-seconds", str(sample_seconds), "--interval-seconds", str(interval_seconds),
                    "--time-scale", str(time_scale), "--duration", str(seconds * time_scale),
                ],
                env,
            )  # fmt: skip
        startup_cpu, _ = _child_cpu([python, "-c", "import metering.agent.cli, metering.agent.fake"], env)
        idle_cpu, idle_wall = _child_cpu([python, "-c", f"import time; time.sleep({seconds})"], env)
    finally:
        server.shutdown()
    steady = max(0.0, agent_cpu - startup_cpu) / agent_wall
    result = {
        "agent_cpu_s": agent_cpu,
        "agent_wall_s": agent_wall,
        "agent_cpu_per_wall_s": agent_cpu / agent_wall,
        "startup_cpu_s": startup_cpu,
        "steady_cpu_per_wall_s": steady,
        "real_speed_cpu_per_wall_s": steady / time_scale,
        "idle_cpu_per_wall_s": idle_cpu / idle_wall,
        "envelopes_acked": float(_Sink.received),
    }
    say(
        f"gridx-agent CPU benchmark: {gpus} fake GPUs, sample every {sample_seconds:g} s, "
        f"report every {interval_seconds:g} s, time scale {time_scale:g}, {seconds:g} s real"
    )
    share = 100 * agent_cpu / agent_wall
    say(f"  agent process    : {agent_cpu:.3f} CPU s over {agent_wall:.1f} s = {share:.3f}% of a core")
    say(f"  of which start-up: {startup_cpu:.3f} CPU s (interpreter + imports, once per start)")
    say(f"  steady state     : {100 * steady:.3f}% of a core at time scale {time_scale:g}")
    if time_scale != 1:
        # Work is per tick and per envelope, so running K times faster costs K times the CPU.
        say(f"  at real speed    : {100 * steady / time_scale:.4f}% of a core (target: under 1%)")
    else:
        say("  target           : under 1% of a core")
    say(f"  idle baseline    : {100 * idle_cpu / idle_wall:.3f}% of a core (python sleeping as long)")
    say(f"  envelopes acked  : {_Sink.received}")
    return result
