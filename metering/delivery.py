"""Delivered time from interval reports: pure functions on integers, no database.

Times are integer Unix milliseconds; intervals are half-open [start, end).

The rules (docs/metering.md, "Verification"):
- A report covers `monotonic_ms` of time, never `end - start` of different reports combined.
- Reports of one GPU from one enrolment (a key's chain), taken in sequence order, are laid end to
  end on the chain's first wall clock: each report's `clock_step_ms` (a wall-clock step the agent
  saw at its start) is undone, so a clock jump neither opens a hole nor makes reports overlap.
- Time is delivered where some present-and-healthy report covers it and no report calls the GPU
  absent or unhealthy; overlaps (a second enrolment, a restored state directory) count once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Interval = tuple[int, int]


@dataclass(frozen=True)
class ReportRow:
    """The parts of a stored interval report that delivery needs (wall times in Unix ms)."""

    chain: int  # the HostKey: one agent enrolment
    seq: int
    position: int
    start_ms: int
    monotonic_ms: int
    clock_step_ms: int
    present: bool
    healthy: bool
    energy_mj: int | None = None
    power_mean_mw: int | None = None
    energy_resets: int = 0

    @property
    def ok(self) -> bool:
        return self.present and self.healthy


@dataclass(frozen=True)
class Span:
    """A report placed on the corrected timeline."""

    start_ms: int
    end_ms: int
    ok: bool
    row: ReportRow


def spans(rows: Iterable[ReportRow]) -> list[Span]:
    """Place one GPU's reports on the timeline, undoing each chain's wall-clock steps."""
    out: list[Span] = []
    offset: dict[int, int] = {}
    seen: set[tuple[int, int, int]] = set()
    for row in sorted(rows, key=lambda r: (r.chain, r.seq, r.position)):
        # (chain, seq, position) names one report; the database stores each once, and a copy
        # must not apply its clock step twice.
        if (row.chain, row.seq, row.position) in seen:
            continue
        seen.add((row.chain, row.seq, row.position))
        offset[row.chain] = offset.get(row.chain, 0) + row.clock_step_ms
        start = row.start_ms - offset[row.chain]
        out.append(Span(start, start + row.monotonic_ms, row.ok, row))
    return out


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint, non-adjacent union of intervals (empty ones dropped)."""
    merged: list[list[int]] = []
    for start, end in sorted(i for i in intervals if i[0] < i[1]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def clip(intervals: Sequence[Interval], lo: int, hi: int) -> list[Interval]:
    """The parts of merged intervals inside [lo, hi)."""
    return [(max(a, lo), min(b, hi)) for a, b in intervals if a < hi and b > lo]


def measure(intervals: Iterable[Interval]) -> int:
    return sum(b - a for a, b in intervals)


def subtract(base: Sequence[Interval], cut: Sequence[Interval]) -> list[Interval]:
    """base minus cut, both merged."""
    out: list[Interval] = []
    j = 0
    for a, b in base:
        cur = a
        while j < len(cut) and cut[j][1] <= cur:
            j += 1
        k = j
        while k < len(cut) and cut[k][0] < b:
            if cut[k][0] > cur:
                out.append((cur, cut[k][0]))
            cur = max(cur, cut[k][1])
            k += 1
        if cur < b:
            out.append((cur, b))
    return out


@dataclass(frozen=True)
class Timeline:
    """One GPU's corrected timeline: where it was delivered and where reported but not delivered."""

    delivered: list[Interval]
    unhealthy: list[Interval]

    def delivered_ms(self, lo: int, hi: int) -> int:
        return measure(clip(self.delivered, lo, hi))

    def unhealthy_ms(self, lo: int, hi: int) -> int:
        return measure(clip(self.unhealthy, lo, hi))


def timeline(rows: Iterable[ReportRow]) -> Timeline:
    placed = spans(rows)
    bad = merge((s.start_ms, s.end_ms) for s in placed if not s.ok)
    good = merge((s.start_ms, s.end_ms) for s in placed if s.ok)
    return Timeline(delivered=subtract(good, bad), unhealthy=bad)


def plausible_energy_mj(row: ReportRow, *, max_power_w: int) -> int:
    """The report's energy if a GPU could have used it in that time, else 0 (a counter glitch)."""
    if row.energy_mj is None or row.energy_mj < 0:
        return 0
    if row.energy_mj > max_power_w * row.monotonic_ms:  # W x ms = mJ
        return 0
    return row.energy_mj


def energy_mismatch(row: ReportRow, *, tolerance_pct: int, slack_j: int, max_power_w: int) -> bool:
    """Energy far from mean power x time (or beyond any GPU's power): worth a person's look.

    An interval with an energy-counter reset legitimately shows less energy than power x time
    (what ran before the reset is unobservable), so only a surplus is checked there.
    """
    if row.energy_mj is None or row.power_mean_mw is None or not row.present:
        return False
    if row.energy_mj > max_power_w * row.monotonic_ms:
        return True
    expected = row.power_mean_mw * row.monotonic_ms // 1000  # mW x ms = uJ
    diff = row.energy_mj - expected
    if row.energy_resets and diff < 0:
        return False
    return abs(diff) * 100 > expected * tolerance_pct and abs(diff) > slack_j * 1000
