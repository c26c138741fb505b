"""The `fake` backend: GPUs driven by a scenario file, for tests, the demo and the CPU benchmark.

A scenario (JSON) names the GPUs, their utilisation/power/memory curves (piecewise linear over
scenario seconds, holding the last value) and faults at given times. Because the curves are known,
so is the truth: `Scenario.energy_mj` integrates the power curve exactly, and tests compare what
the server received with it.

    {"start_wall": "2025-01-01T00:00:00Z",          optional; default: when the agent first ran
     "driver_version": "550.54.15",
     "gpus": [{"uuid": "GPU-...", "name": "NVIDIA H100 80GB HBM3", "memory_bytes": 85520809984,
               "serial": "1652...", "pci_bus_id": "00000000:18:00.0",
               "util_pct": [[0, 0], [600, 100]], "power_w": [[0, 70], [600, 700]],
               "mem_used_bytes": [[0, 0]], "processes": [[0, 0], [60, 1]],
               "unsupported": ["ecc", "serial"]}],
     "faults": [{"at": 120, "kind": "xid", "gpu": "GPU-...", "code": 79},
                {"at": 300, "kind": "gpu_lost", "gpu": "GPU-...", "until": 360},
                {"at": 400, "kind": "energy_reset", "gpu": "GPU-..."},
                {"at": 450, "kind": "ecc", "gpu": "GPU-...", "count": 2},
                {"at": 500, "kind": "driver_reload", "duration": 10},
                {"at": 600, "kind": "wall_jump", "seconds": -3600}]}
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from metering.agent.backend import FEATURES, BackendError, GpuSample
from metering.agent.clock import Clock
from metering.agent.protocol import GpuInfo

FAULT_KINDS = ("xid", "gpu_lost", "energy_reset", "ecc", "driver_reload", "wall_jump")


class ScenarioError(BackendError):
    """The scenario file is unreadable or malformed; the message names the place."""


@dataclass(frozen=True)
class Curve:
    """Piecewise-linear function of scenario time; constant before the first and after the last point."""

    points: tuple[tuple[float, float], ...]

    def at(self, t: float) -> float:
        ts = [p[0] for p in self.points]
        i = bisect.bisect_right(ts, t)
        if i == 0:
            return self.points[0][1]
        if i == len(self.points):
            return self.points[-1][1]
        (t0, v0), (t1, v1) = self.points[i - 1], self.points[i]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    def integral(self, a: float, b: float) -> float:
        """Exact integral over [a, b] (trapezoids between the breakpoints)."""
        if b <= a:
            return 0.0
        cuts = [a] + [t for t, _ in self.points if a < t < b] + [b]
        return sum((self.at(x) + self.at(y)) / 2 * (y - x) for x, y in zip(cuts, cuts[1:], strict=False))


@dataclass(frozen=True)
class Fault:
    at: float
    kind: str
    gpu: str | None = None
    until: float | None = None
    code: int = 0
    count: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class FakeGpu:
    info: GpuInfo
    util_pct: Curve
    power_w: Curve
    mem_used_bytes: Curve
    processes: Curve
    unsupported: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Scenario:
    gpus: tuple[FakeGpu, ...]
    faults: tuple[Fault, ...] = ()
    start_wall: float | None = None
    driver_version: str = "550.54.15"
    source: str = field(default="", compare=False)

    def wall_steps(self) -> list[tuple[float, float]]:
        return [(f.at, f.seconds) for f in self.faults if f.kind == "wall_jump"]

    def gpu(self, uuid: str) -> FakeGpu | None:
        return next((g for g in self.gpus if g.info.uuid == uuid), None)

    def _reloading(self, t: float) -> bool:
        return any(f.kind == "driver_reload" and f.at <= t < f.at + (f.seconds or 10.0) for f in self.faults)

    def _lost(self, uuid: str, t: float) -> bool:
        return any(
            f.kind == "gpu_lost" and f.gpu == uuid and f.at <= t and (f.until is None or t < f.until)
            for f in self.faults
        )

    def _last_energy_reset(self, uuid: str, t: float) -> float:
        """Scenario time the GPU's energy counter last restarted from zero (0: at the start)."""
        resets = [
            f.at
            for f in self.faults
            if f.at <= t and ((f.kind == "energy_reset" and f.gpu == uuid) or f.kind == "driver_reload")
        ]
        return max(resets, default=0.0)

    def energy_mj(self, uuid: str, a: float, b: float) -> float:
        """The truth: energy the GPU used over scenario seconds [a, b], in millijoules."""
        gpu = self.gpu(uuid)
        return 0.0 if gpu is None else gpu.power_w.integral(a, b) * 1000

    def counter_mj(self, uuid: str, t: float) -> int:
        """What NVML's total-energy counter reads at t: energy since the last reset or reload."""
        gpu = self.gpu(uuid)
        assert gpu is not None
        return int(gpu.power_w.integral(self._last_energy_reset(uuid, t), t) * 1000)


# --- loading -----------------------------------------------------------------------------------------


def _curve(raw: Any, where: str, default: float) -> Curve:
    if raw is None:
        return Curve(((0.0, default),))
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return Curve(((0.0, float(raw)),))
    if not isinstance(raw, list) or not raw:
        raise ScenarioError(f"{where}: must be a number or a list of [seconds, value] points")
    points = []
    for p in raw:
        if not (isinstance(p, list) and len(p) == 2 and all(isinstance(x, int | float) for x in p)):
            raise ScenarioError(f"{where}: each point must be [seconds, value], got {p!r}")
        points.append((float(p[0]), float(p[1])))
    if any(b[0] <= a[0] for a, b in zip(points, points[1:], strict=False)):
        raise ScenarioError(f"{where}: point times must increase")
    return Curve(tuple(points))


def parse_scenario(obj: Any, source: str = "scenario") -> Scenario:
    if not isinstance(obj, dict) or not isinstance(obj.get("gpus"), list) or not obj["gpus"]:
        raise ScenarioError(f'{source}: needs a non-empty "gpus" list')
    driver = str(obj.get("driver_version", "550.54.15"))
    gpus = []
    for i, g in enumerate(obj["gpus"]):
        where = f"{source}: gpus[{i}]"
        if not isinstance(g, dict) or not isinstance(g.get("uuid"), str):
            raise ScenarioError(f'{where}: needs a "uuid" string')
        unsupported = frozenset(g.get("unsupported", []))
        if bad := unsupported - set(FEATURES):
            raise ScenarioError(f"{where}: unknown features {sorted(bad)}; known: {', '.join(FEATURES)}")
        info = GpuInfo(
            uuid=g["uuid"],
            name=str(g.get("name", "NVIDIA H100 80GB HBM3")),
            memory_bytes=int(g.get("memory_bytes", 85_520_809_984)),
            serial=None if "serial" in unsupported else str(g.get("serial", f"FAKE{i:08d}")),
            pci_bus_id=str(g.get("pci_bus_id", f"00000000:{0x18 + i:02X}:00.0")),
            driver_version=driver,
        )
        gpus.append(
            FakeGpu(
                info=info,
                util_pct=_curve(g.get("util_pct"), f"{where}.util_pct", 0.0),
                power_w=_curve(g.get("power_w"), f"{where}.power_w", 70.0),
                mem_used_bytes=_curve(g.get("mem_used_bytes"), f"{where}.mem_used_bytes", 0.0),
                processes=_curve(g.get("processes"), f"{where}.processes", 0.0),
                unsupported=unsupported,
            )
        )
    uuids = {g.info.uuid for g in gpus}
    faults = []
    for i, f in enumerate(obj.get("faults", [])):
        where = f"{source}: faults[{i}]"
        if not isinstance(f, dict) or f.get("kind") not in FAULT_KINDS:
            raise ScenarioError(f'{where}: "kind" must be one of {", ".join(FAULT_KINDS)}')
        if not isinstance(f.get("at"), int | float):
            raise ScenarioError(f'{where}: needs "at" (scenario seconds)')
        if f["kind"] in ("xid", "gpu_lost", "energy_reset", "ecc") and f.get("gpu") not in uuids:
            raise ScenarioError(f'{where}: "gpu" must be one of the scenario\'s GPU UUIDs')
        faults.append(
            Fault(
                at=float(f["at"]),
                kind=f["kind"],
                gpu=f.get("gpu"),
                until=None if f.get("until") is None else float(f["until"]),
                code=int(f.get("code", 79)),
                count=int(f.get("count", 1)),
                seconds=float(f.get("seconds") or f.get("duration") or 0.0),
            )
        )
    start_wall = None
    if "start_wall" in obj:
        try:
            start_wall = datetime.fromisoformat(obj["start_wall"]).timestamp()
        except (TypeError, ValueError):
            raise ScenarioError(f"{source}: start_wall must be an ISO-8601 time") from None
    return Scenario(
        gpus=tuple(gpus),
        faults=tuple(sorted(faults, key=lambda f: f.at)),
        start_wall=start_wall,
        driver_version=driver,
        source=source,
    )


def load_scenario(path: Path) -> Scenario:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario file {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"scenario file {path} is not valid JSON: {exc}") from None
    return parse_scenario(obj, str(path))


def demo_scenario(gpu_count: int = 8, *, start_wall: float | None = None) -> Scenario:
    """A busy host with `gpu_count` H100s, used by the benchmark and `--scenario demo`."""
    gpus = [
        {
            "uuid": f"GPU-00000000-0000-4000-8000-{i:012d}",
            "util_pct": [[0, 10], [300, 95], [900, 60], [1800, 95]],
            "power_w": [[0, 90], [300, 650], [900, 420], [1800, 650]],
            "mem_used_bytes": [[0, 1e9], [300, 7e10]],
            "processes": [[0, 0], [60, 1]],
        }
        for i in range(gpu_count)
    ]
    scenario = parse_scenario({"gpus": gpus}, "demo")
    return Scenario(scenario.gpus, (), start_wall, scenario.driver_version, "demo")


# --- the backend -------------------------------------------------------------------------------------


class FakeBackend:
    """Answers like NVML would, from the scenario at the clock's current scenario time."""

    name = "fake"

    def __init__(self, scenario: Scenario, clock: Clock) -> None:
        self.scenario = scenario
        self.clock = clock
        self._last_t: float | None = None

    def inventory(self) -> list[GpuInfo]:
        return [g.info for g in self.scenario.gpus]

    def capabilities(self) -> dict[str, dict[str, bool]]:
        return {g.info.uuid: {f: f not in g.unsupported for f in FEATURES} for g in self.scenario.gpus}

    def sample(self, uuids: Sequence[str]) -> list[GpuSample]:
        t = self.clock.monotonic()
        # Like an NVML event set, a freshly started backend sees only events from now on.
        prev = t if self._last_t is None else self._last_t
        self._last_t = t
        reloading = self.scenario._reloading(t)
        out = []
        for uuid in uuids:
            gpu = self.scenario.gpu(uuid)
            if gpu is None or reloading:
                out.append(GpuSample(uuid=uuid, present=False, util_supported=False))
                continue
            # Events between the previous sample and this one, as the XID thread would have queued.
            window = [f for f in self.scenario.faults if f.gpu == uuid and prev < f.at <= t]
            xids = tuple(f.code for f in window if f.kind == "xid")
            if self.scenario._lost(uuid, t):
                out.append(GpuSample(uuid=uuid, present=True, lost=True, util_supported=False, xids=xids))
                continue
            off = gpu.unsupported
            ecc = sum(
                f.count for f in self.scenario.faults if f.kind == "ecc" and f.gpu == uuid and f.at <= t
            )
            out.append(
                GpuSample(
                    uuid=uuid,
                    present=True,
                    util_pct=() if "utilization" in off else (round(gpu.util_pct.at(t), 2),),
                    util_supported="utilization" not in off,
                    mem_used_bytes=None if "memory" in off else int(gpu.mem_used_bytes.at(t)),
                    power_mw=None if "power" in off else int(gpu.power_w.at(t) * 1000),
                    energy_mj=None if "energy" in off else self.scenario.counter_mj(uuid, t),
                    ecc_uncorrected=None if "ecc" in off else ecc,
                    processes=None if "processes" in off else int(gpu.processes.at(t)),
                    xids=xids,
                )
            )
        return out

    def close(self) -> None:
        return None
