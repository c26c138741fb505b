"""The sampling loop of `gridx-agent run`: sample, aggregate, store; the uploader sends on its own thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from metering.agent import AGENT_VERSION
from metering.agent.backend import Backend
from metering.agent.clock import Clock
from metering.agent.meter import Meter
from metering.agent.outbox import Outbox
from metering.agent.protocol import IntervalReport

log = logging.getLogger("gridx.agent.runner")


@dataclass(frozen=True)
class Timing:
    sample_seconds: float = 5.0
    interval_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.sample_seconds <= self.interval_seconds:
            raise ValueError("need 0 < sample seconds <= interval seconds")


class Runner:
    """Samples every GPU each `sample_seconds`, closes an interval each `interval_seconds`.

    Everything is written to the outbox in one transaction per tick (an envelope at a boundary, the
    open interval's checkpoint otherwise), so a kill -9 at any instant loses at most the samples of
    the current tick.
    """

    def __init__(
        self,
        *,
        backend: Backend,
        clock: Clock,
        outbox: Outbox,
        host_id: str,
        uuids: list[str],
        timing: Timing = Timing(),
        on_envelope: Callable[[int], None] | None = None,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.outbox = outbox
        self.host_id = host_id
        self.uuids = uuids
        self.timing = timing
        self.on_envelope = on_envelope
        self.meter = Meter(uuids)
        self.next_boundary: float | None = None
        self.envelopes = 0

    def recover(self) -> int | None:
        """Report what a killed predecessor measured but had not closed; the envelope's seq or None."""
        state = self.outbox.load_checkpoint()
        if state is None:
            return None
        reports = Meter.from_state(state).close()
        if not reports:
            self.outbox.save_checkpoint(None)
            return None
        log.info("reporting %.1f s measured before the previous agent stopped", reports[0].monotonic_s)
        return self._store(reports)

    def _store(self, reports: list[IntervalReport], checkpoint: dict[str, Any] | None = None) -> int | None:
        seq = self.outbox.append(
            host_id=self.host_id,
            agent_version=AGENT_VERSION,
            reports=reports,
            checkpoint=checkpoint,
            created_at=datetime.fromtimestamp(self.clock.wall(), UTC),
            on_full=self._full,
        )
        if seq is not None:
            self.envelopes += 1
            if self.outbox.is_nearly_full():
                log.warning(
                    "the outbox is over 80%% full (%d envelopes max): is the server reachable?",
                    self.outbox.max_envelopes,
                )
            if self.on_envelope is not None:
                self.on_envelope(seq)
        return seq

    def _full(self, dropped: int) -> None:
        log.error(
            "the outbox is FULL (%d envelopes unsent): new reports are being dropped (%d so far); "
            "restore the connection to the server or raise --outbox-max-envelopes",
            self.outbox.max_envelopes,
            dropped,
        )

    def tick(self) -> None:
        """Take one sample of every GPU; close the interval if its end has come."""
        samples = self.backend.sample(self.uuids)
        mono, wall = self.clock.monotonic(), self.clock.wall()
        self.meter.observe(samples, mono, wall)
        if self.next_boundary is None:
            self.next_boundary = mono + self.timing.interval_seconds
        # Half a sample period of slack: a sample scheduled on the boundary that wakes a little
        # early must still close the interval rather than stretch it by a whole period.
        if mono >= self.next_boundary - self.timing.sample_seconds / 2:
            while self.next_boundary <= mono + self.timing.sample_seconds / 2:
                self.next_boundary += self.timing.interval_seconds
            reports = self.meter.close()
            self._store(reports, self.meter.to_state())
        else:
            self.outbox.save_checkpoint(self.meter.to_state())

    def run(self, stop: threading.Event, *, max_seconds: float | None = None) -> None:
        """Tick on a fixed monotonic schedule until `stop` is set (or `max_seconds` have passed)."""
        self.recover()
        started = self.clock.monotonic()
        next_tick = started
        while not stop.is_set():
            self.tick()
            now = self.clock.monotonic()
            if max_seconds is not None and now - started >= max_seconds:
                break
            next_tick += self.timing.sample_seconds
            if next_tick < now:
                # We fell behind (suspended host, a slow driver call): skip the missed ticks rather
                # than firing them back to back; the counters cover the gap anyway.
                missed = int((now - next_tick) // self.timing.sample_seconds) + 1
                next_tick += missed * self.timing.sample_seconds
            if self.clock.wait(stop, next_tick - now):
                break
        self.finish()

    def finish(self) -> None:
        """On a clean stop, report the open interval now instead of leaving it to the next start."""
        if self.meter.elapsed > 0:
            self._store(self.meter.close(), None)
        else:
            self.outbox.save_checkpoint(None)
