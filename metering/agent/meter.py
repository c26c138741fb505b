"""Turns GPU samples into interval reports: counters to deltas, readings to means and maxima.

Timing rule: a sample taken at monotonic time t accounts for (t_prev, t]. Interval boundaries are
sample instants, so the boundary sample ends one interval and is the baseline of the next, and
counter deltas (energy, ECC) partition exactly: nothing is counted twice or dropped between
intervals. The wall time of an interval is its start reading plus the monotonic duration, so a
wall-clock jump can never stretch or shrink an interval; the jump shows as `clock_step_s` on the
next interval instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from metering.agent.backend import GpuSample
from metering.agent.protocol import IntervalReport, time_from_unix_ms

# XIDs that a buyer's own program causes (illegal address, MMU fault from the application,
# graphics exception, preemptive cleanup): they say nothing about the seller's GPU, so they are
# reported but do not make the interval unhealthy. Every other XID does.
APPLICATION_XIDS = frozenset({13, 31, 43, 45})
# No GPU draws more; an energy step above this times the elapsed time is a counter glitch
# (reload with a non-zero start, a wrapped or corrupted reading) and is dropped, never billed.
MAX_PLAUSIBLE_POWER_W = 5000
ENERGY_SLACK_MJ = 5000  # counter granularity and sample timing jitter
# Wall-clock disagreement (against start + monotonic) below this is NTP slewing, not a step.
CLOCK_STEP_TOLERANCE_S = 1.0


@dataclass
class _Counter:
    """A cumulative counter's last reading, carried from interval to interval."""

    value: int | None = None
    mono: float = 0.0


@dataclass
class _Acc:
    """Running aggregates of one GPU over the open interval (JSON-able for the checkpoint)."""

    samples: int = 0
    all_present: bool = True
    healthy: bool = True
    util_sum: float = 0.0
    util_n: int = 0
    util_max: float | None = None
    util_supported: bool = False
    mem_max: int | None = None
    energy_mj: int | None = None
    energy_resets: int = 0
    power_sum: int = 0
    power_n: int = 0
    xids: list[int] = field(default_factory=list)
    ecc_delta: int | None = None
    proc_max: int | None = None


def _max(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


class Meter:
    """Aggregates the samples of a fixed set of GPUs into one report per GPU per interval."""

    def __init__(self, uuids: Sequence[str]) -> None:
        self.uuids = list(uuids)
        self.start_mono: float | None = None
        self.start_wall_ms = 0
        self.last_mono = 0.0
        self.last_wall = 0.0
        self.clock_step_s = 0.0
        self.acc = {u: _Acc() for u in self.uuids}
        self.energy = {u: _Counter() for u in self.uuids}
        self.ecc = {u: _Counter() for u in self.uuids}

    @property
    def is_open(self) -> bool:
        return self.start_mono is not None

    @property
    def elapsed(self) -> float:
        return 0.0 if self.start_mono is None else self.last_mono - self.start_mono

    def observe(self, samples: Sequence[GpuSample], mono: float, wall: float) -> None:
        """Account one sample of every GPU, taken at (mono, wall)."""
        if self.start_mono is None:
            self.start_mono = mono
            self.start_wall_ms = round(wall * 1000)
            self.last_mono, self.last_wall = mono, wall
            for s in samples:
                self._baseline(s, mono)
            return
        dt = mono - self.last_mono
        self.last_mono, self.last_wall = mono, wall
        if dt <= 0:
            return  # a second sample at the same instant adds nothing
        for s in samples:
            self._add(s, mono)

    def _baseline(self, s: GpuSample, mono: float) -> None:
        if s.energy_mj is not None:
            self.energy[s.uuid] = _Counter(s.energy_mj, mono)
        if s.ecc_uncorrected is not None:
            self.ecc[s.uuid] = _Counter(s.ecc_uncorrected, mono)
        # XIDs delivered with the very first sample happened before metering began: keep them.
        self.acc[s.uuid].xids.extend(s.xids)

    def _add(self, s: GpuSample, mono: float) -> None:
        a = self.acc[s.uuid]
        a.samples += 1
        a.all_present = a.all_present and s.present
        a.xids.extend(s.xids)
        unhealthy_xid = any(x not in APPLICATION_XIDS for x in s.xids)
        a.healthy = a.healthy and s.present and not s.lost and not unhealthy_xid
        if s.util_supported and s.util_pct:
            a.util_supported = True
            a.util_sum += sum(s.util_pct)
            a.util_n += len(s.util_pct)
            top = max(s.util_pct)
            a.util_max = top if a.util_max is None else max(a.util_max, top)
        a.mem_max = _max(a.mem_max, s.mem_used_bytes)
        a.proc_max = _max(a.proc_max, s.processes)
        if s.power_mw is not None:
            a.power_sum += s.power_mw
            a.power_n += 1
        if s.energy_mj is not None:
            delta, glitch = self._energy_delta(s.uuid, s.energy_mj, mono)
            a.energy_mj = (a.energy_mj or 0) + delta
            a.energy_resets += glitch
        if s.ecc_uncorrected is not None:
            prev = self.ecc[s.uuid].value
            if prev is not None:
                # The volatile counter restarts at zero when the driver reloads.
                step = s.ecc_uncorrected - prev if s.ecc_uncorrected >= prev else s.ecc_uncorrected
                a.ecc_delta = (a.ecc_delta or 0) + step
            else:
                a.ecc_delta = a.ecc_delta or 0
            self.ecc[s.uuid] = _Counter(s.ecc_uncorrected, mono)

    def _energy_delta(self, uuid: str, value: int, mono: float) -> tuple[int, int]:
        """Energy since the previous reading, and 1 if the counter was discontinuous, else 0."""
        prev = self.energy[uuid]
        self.energy[uuid] = _Counter(value, mono)
        if prev.value is None:
            return 0, 0  # first reading since the GPU (re)appeared: a baseline only
        bound = MAX_PLAUSIBLE_POWER_W * (mono - prev.mono) * 1000 + ENERGY_SLACK_MJ
        if value >= prev.value:
            delta = value - prev.value
            return (delta, 0) if delta <= bound else (0, 1)
        # The counter went backwards: the driver reloaded and it restarted from zero, so the value
        # itself is what was used since the reload (bounded, in case it did not start at zero).
        return (value, 1) if value <= bound else (0, 1)

    def close(self) -> list[IntervalReport]:
        """Reports for the open interval, which ends at the last sample; the next one opens there."""
        if self.start_mono is None:
            return []
        duration_ms = round((self.last_mono - self.start_mono) * 1000)
        reports: list[IntervalReport] = []
        if duration_ms > 0:
            start = time_from_unix_ms(self.start_wall_ms)
            end = time_from_unix_ms(self.start_wall_ms + duration_ms)
            for uuid in self.uuids:
                a = self.acc[uuid]
                if a.samples == 0:
                    continue
                reports.append(
                    IntervalReport(
                        gpu_uuid=uuid,
                        start=start,
                        end=end,
                        monotonic_s=duration_ms / 1000,
                        present=a.all_present,
                        healthy=a.healthy,
                        util_mean_pct=round(a.util_sum / a.util_n, 2) if a.util_n else None,
                        util_max_pct=round(a.util_max, 2) if a.util_max is not None else None,
                        mem_used_max_bytes=a.mem_max,
                        energy_mj=a.energy_mj,
                        power_mean_mw=round(a.power_sum / a.power_n) if a.power_n else None,
                        xid_errors=tuple(a.xids),
                        ecc_uncorrected_delta=a.ecc_delta,
                        processes_max=a.proc_max,
                        samples=a.samples,
                        energy_resets=a.energy_resets,
                        clock_step_s=self.clock_step_s,
                    )
                )
        # The next interval starts where this one ended. Its wall start is this one's end unless
        # the wall clock now disagrees by more than slewing can explain: then the clock stepped,
        # and we follow it (so reports stay placed in real time) and say so on the next report.
        expected_ms = self.start_wall_ms + duration_ms
        step_s = self.last_wall - expected_ms / 1000
        if abs(step_s) > CLOCK_STEP_TOLERANCE_S:
            self.start_wall_ms = round(self.last_wall * 1000)
            self.clock_step_s = round(step_s, 3)
        else:
            self.start_wall_ms = expected_ms
            self.clock_step_s = 0.0
        self.start_mono = self.last_mono
        self.acc = {u: _Acc() for u in self.uuids}
        return reports

    # Checkpointing: the open interval is saved at every sample so that a kill -9 loses at most one
    # sample period of measurement; the restarted agent reports what the dead one had measured.

    def to_state(self) -> dict[str, Any]:
        return {
            "uuids": self.uuids,
            "start_mono": self.start_mono,
            "start_wall_ms": self.start_wall_ms,
            "last_mono": self.last_mono,
            "last_wall": self.last_wall,
            "clock_step_s": self.clock_step_s,
            "acc": {u: vars(a) for u, a in self.acc.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Meter:
        meter = cls(state["uuids"])
        meter.start_mono = state["start_mono"]
        meter.start_wall_ms = state["start_wall_ms"]
        meter.last_mono = state["last_mono"]
        meter.last_wall = state["last_wall"]
        meter.clock_step_s = state["clock_step_s"]
        meter.acc = {u: _Acc(**fields) for u, fields in state["acc"].items()}
        return meter
