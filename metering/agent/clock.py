"""Clocks the agent reads, injectable so that tests of clock jumps are deterministic.

Two readings are kept apart on purpose: `monotonic()` measures how long things took (it never
jumps), `wall()` says when they happened (NTP or an operator may step it). Interval lengths come
only from the monotonic clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; only differences mean anything."""

    def wall(self) -> float:
        """Unix seconds now, as the host believes."""

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """Let `seconds` of this clock pass unless `stop` is set first; True when stopped."""


class SystemClock:
    """The real host clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        return stop.wait(max(0.0, seconds))


class SimClock:
    """Scenario time for the fake backend: `monotonic()` is seconds since the scenario began.

    scale=None: manual time that advances only in `wait` (or `advance`), so a whole day runs in
    milliseconds and deterministically. scale=k: k simulated seconds per real second, counted from
    the real Unix time `origin_real`, which is kept in the state directory so that a restarted
    agent (after kill -9) continues on the same timeline.
    `wall_steps` are (at scenario second, step in seconds) pairs: the wall clock jumps by `step`
    at `at` while the monotonic clock carries on undisturbed, as on a host whose NTP steps.
    """

    def __init__(
        self,
        *,
        start_wall: float,
        scale: float | None = None,
        origin_real: float = 0.0,
        wall_steps: Sequence[tuple[float, float]] = (),
    ) -> None:
        if scale is not None and scale <= 0:
            raise ValueError("time scale must be positive")
        self.start_wall = start_wall
        self.scale = scale
        self.origin_real = origin_real
        self.wall_steps = sorted(wall_steps)
        self._manual = 0.0

    def monotonic(self) -> float:
        if self.scale is None:
            return self._manual
        return max(0.0, (time.time() - self.origin_real) * self.scale)

    def wall(self) -> float:
        t = self.monotonic()
        return self.start_wall + t + sum(step for at, step in self.wall_steps if at <= t)

    def advance(self, seconds: float) -> None:
        if self.scale is not None:
            raise RuntimeError("only a manual clock can be advanced")
        self._manual += max(0.0, seconds)

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        if self.scale is None:
            if stop.is_set():
                return True
            self.advance(seconds)
            return False
        return stop.wait(max(0.0, seconds) / self.scale)
