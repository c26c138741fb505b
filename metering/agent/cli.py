"""The `gridx-agent` command line: enroll, run, status, selftest, bench-cpu.

Every failure a user can cause or meet (no driver, no enrolment, server refusal, bad scenario)
ends in one clear sentence on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from metering.agent import AGENT_VERSION
from metering.agent.backend import Backend, BackendError
from metering.agent.clock import Clock, SimClock, SystemClock
from metering.agent.enroll import EnrollError, enroll
from metering.agent.outbox import DEFAULT_MAX_ENVELOPES, Outbox
from metering.agent.runner import Runner, Timing
from metering.agent.state import AgentConfig, StateDir, StateError, default_state_dir
from metering.agent.uploader import Uploader

log = logging.getLogger("gridx.agent")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
FAKE_CLOCK_FILE = "fake-clock.json"


def say(text: str = "") -> None:
    """Write a line for the user: command output goes to stdout, logs and errors to stderr."""
    sys.stdout.write(text + "\n")


class CliError(Exception):
    """A user-facing failure: printed as one message, exit code 1."""


# --- backends -----------------------------------------------------------------------------------------


def _fake_clock(state: StateDir | None, scenario_start: float | None, scale: float) -> SimClock:
    """The scenario clock; its origin is kept in the state dir so a restarted agent carries on."""
    if scale == 0:
        start = scenario_start if scenario_start is not None else time.time()
        return SimClock(start_wall=start)
    origin = {"origin_real": time.time(), "start_wall": scenario_start or time.time()}
    if state is not None:
        path = state.path / FAKE_CLOCK_FILE
        if path.exists():
            origin = json.loads(path.read_text(encoding="utf-8"))
        else:
            state.ensure()
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(origin), encoding="utf-8")
            os.replace(tmp, path)
    return SimClock(
        start_wall=float(origin["start_wall"]), scale=scale, origin_real=float(origin["origin_real"])
    )


def make_backend(
    name: str, scenario: str | None, *, state: StateDir | None = None, time_scale: float = 1.0
) -> tuple[Backend, Clock]:
    """The backend and the clock that goes with it (the fake one brings scenario time)."""
    if name == "nvml":
        from metering.agent.nvml import NvmlBackend

        return NvmlBackend(), SystemClock()
    if name == "fake":
        from metering.agent.fake import FakeBackend, demo_scenario, load_scenario

        if scenario is None:
            raise CliError("the fake backend needs --scenario FILE (or --scenario demo)")
        if scenario == "demo" or scenario.startswith("demo:"):
            count = int(scenario.partition(":")[2] or 8)
            spec = demo_scenario(count)
        else:
            spec = load_scenario(Path(scenario))
        clock = _fake_clock(state, spec.start_wall, time_scale)
        clock.wall_steps = sorted(spec.wall_steps())
        return FakeBackend(spec, clock), clock
    raise CliError(f"unknown backend {name!r}: use nvml or fake")


# --- commands -----------------------------------------------------------------------------------------


def cmd_enroll(args: argparse.Namespace) -> int:
    state = StateDir(args.state_dir)
    backend, _ = make_backend(args.backend, args.scenario, time_scale=0)
    try:
        gpus = backend.inventory()
    finally:
        backend.close()
    scenario = (
        str(Path(args.scenario).resolve())
        if args.scenario and not args.scenario.startswith("demo")
        else args.scenario
    )
    done = enroll(
        state=state,
        server_url=args.server,
        token=args.token,
        gpus=gpus,
        backend=args.backend,
        scenario=scenario,
        force=args.force,
    )
    say(f"Enrolled as host {done.host_id} with {len(done.gpu_uuids)} GPU(s):")
    for uuid in done.gpu_uuids:
        say(f"  {uuid}")
    say(f"Key and config are in {state.path}. Start metering with `gridx-agent run`.")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    state = StateDir(args.state_dir)
    config = state.load_config()
    key = state.load_key()
    backend_name = args.backend or config.backend
    scenario = args.scenario or config.scenario
    if backend_name == "fake" and args.time_scale == 0 and args.duration is None:
        raise CliError("--time-scale 0 runs as fast as possible and needs --duration")
    timing = Timing(sample_seconds=args.sample_seconds, interval_seconds=args.interval_seconds)
    backend, clock = make_backend(backend_name, scenario, state=state, time_scale=args.time_scale)
    stop, wake = threading.Event(), threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("stopping on signal %d", signum)
        stop.set()
        wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    outbox = Outbox(state.outbox_path, max_envelopes=args.outbox_max_envelopes)
    sender_outbox = Outbox(state.outbox_path, max_envelopes=args.outbox_max_envelopes)
    uploader = Uploader(
        outbox=sender_outbox, server_url=config.server_url, host_id=config.host_id, private_key=key
    )
    sender = threading.Thread(target=uploader.run, args=(stop, wake), name="gridx-uploader", daemon=True)
    runner = Runner(
        backend=backend,
        clock=clock,
        outbox=outbox,
        host_id=config.host_id,
        uuids=list(config.gpu_uuids),
        timing=timing,
        on_envelope=lambda _seq: wake.set(),
    )
    log.info(
        "metering %d GPU(s) with the %s backend: a sample every %g s, a report every %g s, to %s",
        len(config.gpu_uuids),
        backend.name,
        timing.sample_seconds,
        timing.interval_seconds,
        config.server_url,
    )
    sender.start()
    try:
        runner.run(stop, max_seconds=args.duration)
    finally:
        backend.close()
        # One last chance to deliver what the final tick produced; whatever stays is sent next time.
        stop.set()
        wake.set()
        sender.join(timeout=10)
        if not sender.is_alive():
            # Bounded: a stop must not wait for a long backlog; the rest goes on the next start.
            uploader.drain(limit=100)
        outbox.close()
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    state = StateDir(args.state_dir)
    try:
        config: AgentConfig | None = state.load_config()
    except StateError:
        config = None
    if not state.outbox_path.exists():
        outbox_status = None
    else:
        outbox = Outbox(state.outbox_path)
        outbox_status = outbox.status()
        outbox.close()
    if args.json:
        say(
            json.dumps(
                {
                    "state_dir": str(state.path),
                    "config": None if config is None else config.to_json(),
                    "outbox": None if outbox_status is None else asdict(outbox_status),
                },
                indent=2,
            )
        )
        return EXIT_OK
    say(f"state directory : {state.path}")
    if config is None:
        say("enrolment       : not enrolled (run `gridx-agent enroll`)")
    else:
        say(f"host id         : {config.host_id}")
        say(f"server          : {config.server_url}")
        say(f"GPUs            : {len(config.gpu_uuids)} ({config.backend} backend)")
    if outbox_status is None:
        say("outbox          : empty (the agent has not run yet)")
        return EXIT_OK
    o = outbox_status
    span = f" (seq {o.oldest_seq}..{o.newest_seq})" if o.queued else ""
    say(f"queued          : {o.queued} envelope(s){span} of at most {o.max_envelopes}")
    say(f"last sequence   : {o.last_seq}")
    say(f"last ack        : seq {o.last_ack_seq} at {o.last_ack_at or 'never'}")
    say(f"last error      : {o.last_error or 'none'}" + (f" (at {o.last_error_at})" if o.last_error else ""))
    if o.refused:
        say(f"refused         : {o.refused} envelope(s) refused for good by the server (kept in the outbox)")
    if o.dropped_reports:
        say(f"DROPPED         : {o.dropped_reports} report(s) dropped because the outbox was full")
    return EXIT_OK


def cmd_selftest(args: argparse.Namespace) -> int:
    backend, clock = make_backend(args.backend, args.scenario, time_scale=0)
    try:
        gpus = backend.inventory()
        if not gpus:
            say("NVML works but found no GPU on this host.")
            return EXIT_FAILURE
        say(f"backend {backend.name}: {len(gpus)} GPU(s), driver {gpus[0].driver_version}")
        caps = backend.capabilities()
        samples = backend.sample([g.uuid for g in gpus])
        for gpu, sample in zip(gpus, samples, strict=True):
            mem_gib = gpu.memory_bytes / 2**30
            serial = gpu.serial or "-"
            say(f"\n{gpu.uuid}  {gpu.name}  {mem_gib:.1f} GiB  bus {gpu.pci_bus_id}  serial {serial}")
            fields = asdict(sample)
            del fields["uuid"]
            for name, value in fields.items():
                say(f"  {name:<16} {value if value is not None else 'not supported'}")
            supported = [f for f, ok in caps.get(gpu.uuid, {}).items() if ok]
            missing = [f for f, ok in caps.get(gpu.uuid, {}).items() if not ok]
            say(f"  supported        {', '.join(supported) or '-'}")
            say(f"  not supported    {', '.join(missing) or '-'}")
    finally:
        backend.close()
    return EXIT_OK


def cmd_bench_cpu(args: argparse.Namespace) -> int:
    from metering.agent.bench import run_benchmark

    run_benchmark(
        gpus=args.gpus,
        seconds=args.seconds,
        sample_seconds=args.sample_seconds,
        interval_seconds=args.interval_seconds,
        time_scale=args.time_scale,
    )
    return EXIT_OK


# --- parsing ------------------------------------------------------------------------------------------


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gridx-agent", description="Gridx GPU metering agent")
    parser.add_argument("--version", action="version", version=f"gridx-agent {AGENT_VERSION}")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="key, config and outbox (default: $GRIDX_AGENT_DIR, else /var/lib/gridx-agent)",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)

    def backend_args(p: argparse.ArgumentParser, default: str | None) -> None:
        p.add_argument("--backend", choices=["nvml", "fake"], default=default)
        p.add_argument("--scenario", help="fake backend: scenario JSON file, or demo[:GPUS]")

    p = sub.add_parser("enroll", help="create this host's key and register it and its GPUs")
    p.add_argument("--server", required=True, help="Gridx server URL, e.g. https://gridx.example")
    p.add_argument("--token", required=True, help="single-use enrolment token from the seller console")
    p.add_argument("--force", action="store_true", help="enrol again (new key, new host id)")
    backend_args(p, "nvml")
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("run", help="meter the GPUs and report to the server until stopped")
    backend_args(p, None)
    p.add_argument("--sample-seconds", type=_positive, default=5.0)
    p.add_argument("--interval-seconds", type=_positive, default=60.0)
    p.add_argument(
        "--time-scale",
        type=_non_negative,
        default=1.0,
        help="fake backend: simulated seconds per real second (0: as fast as possible)",
    )
    p.add_argument("--duration", type=_positive, default=None, help="stop after this many (clock) seconds")
    p.add_argument("--outbox-max-envelopes", type=int, default=DEFAULT_MAX_ENVELOPES)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="what is queued, the last acknowledgement, the last error")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("selftest", help="one sample of every GPU and what this machine supports")
    backend_args(p, "nvml")
    p.set_defaults(func=cmd_selftest)

    p = sub.add_parser("bench-cpu", help="measure the agent's CPU use against an idle baseline")
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--seconds", type=_positive, default=60.0, help="real seconds to run")
    p.add_argument("--sample-seconds", type=_positive, default=5.0)
    p.add_argument("--interval-seconds", type=_positive, default=60.0)
    p.add_argument("--time-scale", type=_positive, default=1.0)
    p.set_defaults(func=cmd_bench_cpu)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.state_dir is None:
        args.state_dir = default_state_dir()
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s gridx-agent %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        result: Any = args.func(args)
        return int(result)
    except (CliError, BackendError, StateError, EnrollError, ValueError) as exc:
        sys.stderr.write(f"gridx-agent: {exc}\n")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
