"""The small interface every GPU backend (nvml, fake) implements, and the types it returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from metering.agent.protocol import GpuInfo

# Features a backend may lack on a given GPU or driver; `selftest` prints which are supported.
FEATURES = ("utilization", "memory", "power", "energy", "ecc", "processes", "xid_events", "serial")


class BackendError(Exception):
    """A backend cannot work at all (no driver, no permission); the message is for the operator."""


@dataclass(frozen=True)
class GpuSample:
    """One reading of one GPU. Counters are cumulative; the meter turns them into deltas.

    None means "not supported here", never "zero": an unsupported counter must not bill nothing.
    """

    uuid: str
    present: bool  # the GPU answered (it is on the bus and the driver sees it)
    lost: bool = False  # NVML said GPU_IS_LOST, or the scenario said so
    util_pct: tuple[float, ...] = ()  # utilisation readings since the previous sample
    util_supported: bool = True
    mem_used_bytes: int | None = None
    power_mw: int | None = None
    energy_mj: int | None = None  # total energy since the driver loaded (resets on reload)
    ecc_uncorrected: int | None = None  # volatile uncorrected ECC count (resets on reload)
    processes: int | None = None  # compute processes running now
    xids: tuple[int, ...] = ()  # XID events seen since the previous sample


class Backend(Protocol):
    name: str

    def inventory(self) -> list[GpuInfo]:
        """The GPUs on this host, as sent at enrolment."""

    def sample(self, uuids: Sequence[str]) -> list[GpuSample]:
        """One sample of each GPU in `uuids`, in that order; a missing GPU gives present=False."""

    def capabilities(self) -> dict[str, dict[str, bool]]:
        """Per GPU UUID, which of FEATURES work on this machine."""

    def close(self) -> None:
        """Release the driver (stop the XID thread, nvmlShutdown)."""
