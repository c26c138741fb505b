"""The `nvml` backend: real GPUs through nvidia-ml-py (`import pynvml`).

Rules from research/metering-billing.md that shape this file:
- nvmlInit once per process (again only after the driver went away and came back);
- NotSupported (and NoPermission) mean the feature is absent on this GPU/driver, not a failure:
  the value is reported as null, and the call is not repeated on every sample;
- GpuIsLost means the GPU is unhealthy: the sample says lost, the interval is not healthy;
- XID events arrive through an event set waited on by a thread of their own;
- utilisation comes from nvmlDeviceGetSamples with the last timestamp seen, so polling every few
  seconds neither loses nor double-counts the driver's own, finer samples;
- NVMLError instances are unhashable: never put them in a set or use them as a dict key.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any, cast

from metering.agent.backend import FEATURES, BackendError, GpuSample
from metering.agent.protocol import GpuInfo

log = logging.getLogger("gridx.agent.nvml")

NO_DRIVER_MESSAGE = (
    "NVIDIA driver not found (NVML library missing): install the driver or run with --backend fake"
)
XID_WAIT_MS = 1000


class _Lost(Exception):
    """Raised inside a sample when NVML reports GPU_IS_LOST."""


class _Gone(Exception):
    """Raised inside a sample when the driver itself went away (reload, unload)."""


def _text(value: object) -> str:
    # nvidia-ml-py returns str in recent releases and bytes in older ones.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _load_pynvml() -> ModuleType:
    try:
        import pynvml  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        raise BackendError(
            "the nvidia-ml-py package is not installed: `pip install nvidia-ml-py` or use --backend fake"
        ) from None
    return cast(ModuleType, pynvml)


class NvmlBackend:
    """GPUs as NVML reports them. `nv` may be a scripted stand-in of the pynvml module (tests)."""

    name = "nvml"

    def __init__(self, nv: Any = None, *, xid_thread: bool = True) -> None:
        self.nv: Any = nv if nv is not None else _load_pynvml()
        self._init()
        self.driver_version = self._call_text(self.nv.nvmlSystemGetDriverVersion)
        self.handles: dict[str, Any] = {}
        self.unsupported: dict[str, set[str]] = {}
        self.last_util_ts: dict[str, int] = {}
        self.needs_reinit = False
        self._xids: dict[str, list[int]] = {}
        self._xid_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._event_set: Any = None
        self._discover()
        if xid_thread:
            self._start_xid_thread()

    # --- driver lifecycle -----------------------------------------------------------------------

    def _init(self) -> None:
        nv = self.nv
        try:
            nv.nvmlInit()
        except nv.NVMLError_LibraryNotFound:
            raise BackendError(NO_DRIVER_MESSAGE) from None
        except nv.NVMLError_DriverNotLoaded:
            raise BackendError(
                "the NVIDIA driver is installed but not loaded (no GPU, or the kernel module failed): "
                "check `nvidia-smi`, or run with --backend fake"
            ) from None
        except nv.NVMLError_NoPermission:
            raise BackendError(
                "no permission to use NVML: run the agent as root or in the video group"
            ) from None
        except nv.NVMLError as exc:
            raise BackendError(f"NVML failed to start: {exc}") from None

    def _call_text(self, fn: Any, *args: Any) -> str:
        try:
            return _text(fn(*args))
        except self.nv.NVMLError as exc:
            raise BackendError(f"NVML failed: {exc}") from None

    def _discover(self) -> None:
        nv = self.nv
        self.handles = {}
        for i in range(nv.nvmlDeviceGetCount()):
            handle = nv.nvmlDeviceGetHandleByIndex(i)
            self.handles[_text(nv.nvmlDeviceGetUUID(handle))] = handle
        for uuid in self.handles:
            self.unsupported.setdefault(uuid, set())

    def _reinit(self) -> bool:
        """After the driver went away: shut down and start NVML again; True if it came back."""
        nv = self.nv
        with contextlib.suppress(nv.NVMLError):  # already gone; all we want is a fresh start
            nv.nvmlShutdown()
        try:
            nv.nvmlInit()
            self._discover()
        except nv.NVMLError as exc:
            log.warning("NVML is not back yet: %s", exc)
            return False
        self.needs_reinit = False
        self.last_util_ts.clear()
        log.warning("NVML restarted after the driver went away; energy counters restart from zero")
        return True

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * XID_WAIT_MS / 1000)
        nv = self.nv
        try:
            if self._event_set is not None:
                nv.nvmlEventSetFree(self._event_set)
            nv.nvmlShutdown()
        except nv.NVMLError:
            pass  # shutting down anyway

    # --- XID events ----------------------------------------------------------------------------

    def _start_xid_thread(self) -> None:
        nv = self.nv
        try:
            self._event_set = nv.nvmlEventSetCreate()
        except nv.NVMLError as exc:
            log.warning("XID events unavailable (%s): critical errors will not be reported", exc)
            for uuid in self.handles:
                self.unsupported[uuid].add("xid_events")
            return
        for uuid, handle in self.handles.items():
            try:
                nv.nvmlDeviceRegisterEvents(handle, nv.nvmlEventTypeXidCriticalError, self._event_set)
            except (nv.NVMLError_NotSupported, nv.NVMLError_NoPermission):
                self.unsupported[uuid].add("xid_events")
            except nv.NVMLError as exc:
                log.warning("cannot watch XID events of %s: %s", uuid, exc)
                self.unsupported[uuid].add("xid_events")
        self._thread = threading.Thread(target=self._xid_loop, name="gridx-xid", daemon=True)
        self._thread.start()

    def _xid_loop(self) -> None:
        nv = self.nv
        while not self._stop.is_set():
            try:
                data = nv.nvmlEventSetWait_v2(self._event_set, XID_WAIT_MS)
            except nv.NVMLError_Timeout:
                continue
            except nv.NVMLError as exc:
                # The driver went away or the set broke: do not spin, try again shortly.
                log.warning("waiting for XID events failed: %s", exc)
                self._stop.wait(5.0)
                continue
            if not data.eventType & nv.nvmlEventTypeXidCriticalError:
                continue
            try:
                uuid = _text(nv.nvmlDeviceGetUUID(data.device))
            except nv.NVMLError:
                continue
            with self._xid_lock:
                self._xids.setdefault(uuid, []).append(int(data.eventData))

    def _take_xids(self, uuid: str) -> tuple[int, ...]:
        with self._xid_lock:
            return tuple(self._xids.pop(uuid, ()))

    # --- sampling ------------------------------------------------------------------------------

    def _try(self, uuid: str, feature: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call NVML for one feature: None if unsupported, _Lost/_Gone for a lost GPU or driver."""
        nv = self.nv
        if feature in self.unsupported[uuid]:
            return None
        try:
            return fn(*args, **kwargs)
        except (nv.NVMLError_NotSupported, nv.NVMLError_NoPermission, nv.NVMLError_FunctionNotFound):
            self.unsupported[uuid].add(feature)
            log.info("%s: %s is not supported here; it will be reported as null", uuid, feature)
            return None
        except nv.NVMLError_GpuIsLost:
            raise _Lost from None
        except (nv.NVMLError_Uninitialized, nv.NVMLError_DriverNotLoaded, nv.NVMLError_LibRmVersionMismatch):
            raise _Gone from None
        except nv.NVMLError as exc:
            log.warning("%s: reading %s failed: %s", uuid, feature, exc)
            return None

    def _utilisation(self, uuid: str, handle: Any) -> tuple[tuple[float, ...], bool]:
        nv = self.nv
        if "utilization_samples" not in self.unsupported[uuid]:
            try:
                value_type, samples = nv.nvmlDeviceGetSamples(
                    handle, nv.NVML_GPU_UTILIZATION_SAMPLES, self.last_util_ts.get(uuid, 0)
                )
            except nv.NVMLError_NotFound:
                return (), True  # no new sample since the last timestamp: nothing to add
            except (nv.NVMLError_NotSupported, nv.NVMLError_FunctionNotFound):
                self.unsupported[uuid].add("utilization_samples")
            except nv.NVMLError_GpuIsLost:
                raise _Lost from None
            except (nv.NVMLError_Uninitialized, nv.NVMLError_DriverNotLoaded):
                raise _Gone from None
            except nv.NVMLError as exc:
                log.warning("%s: utilisation samples failed: %s", uuid, exc)
                return (), True
            else:
                if samples:
                    self.last_util_ts[uuid] = max(int(s.timeStamp) for s in samples)
                return tuple(float(_sample_value(nv, value_type, s)) for s in samples), True
        rates = self._try(uuid, "utilization", nv.nvmlDeviceGetUtilizationRates, handle)
        return ((), False) if rates is None else ((float(rates.gpu),), True)

    def sample(self, uuids: Sequence[str]) -> list[GpuSample]:
        if self.needs_reinit and not self._reinit():
            return [GpuSample(uuid=u, present=False, util_supported=False) for u in uuids]
        out = []
        for uuid in uuids:
            try:
                out.append(self._sample_one(uuid))
            except _Lost:
                out.append(GpuSample(uuid=uuid, present=True, lost=True, util_supported=False))
            except _Gone:
                self.needs_reinit = True
                out.append(GpuSample(uuid=uuid, present=False, util_supported=False))
        return out

    def _sample_one(self, uuid: str) -> GpuSample:
        nv = self.nv
        handle = self.handles.get(uuid)
        xids = self._take_xids(uuid)
        if handle is None:
            return GpuSample(uuid=uuid, present=False, util_supported=False, xids=xids)
        util, util_ok = self._utilisation(uuid, handle)
        memory = self._try(uuid, "memory", self._memory, handle)
        processes = self._try(uuid, "processes", nv.nvmlDeviceGetComputeRunningProcesses, handle)
        return GpuSample(
            uuid=uuid,
            present=True,
            util_pct=util,
            util_supported=util_ok,
            mem_used_bytes=None if memory is None else int(memory.used),
            power_mw=self._try(uuid, "power", nv.nvmlDeviceGetPowerUsage, handle),
            energy_mj=self._try(uuid, "energy", nv.nvmlDeviceGetTotalEnergyConsumption, handle),
            ecc_uncorrected=self._try(
                uuid,
                "ecc",
                nv.nvmlDeviceGetTotalEccErrors,
                handle,
                nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                nv.NVML_VOLATILE_ECC,
            ),
            processes=None if processes is None else len(processes),
            xids=xids,
        )

    def _memory(self, handle: Any) -> Any:
        nv = self.nv
        try:
            # v2 counts memory reserved by the driver separately, so `used` is what programs use.
            return nv.nvmlDeviceGetMemoryInfo(handle, version=nv.nvmlMemory_v2)
        except nv.NVMLError_FunctionNotFound:
            return nv.nvmlDeviceGetMemoryInfo(handle)  # drivers older than the v2 call

    # --- identity ------------------------------------------------------------------------------

    def inventory(self) -> list[GpuInfo]:
        nv = self.nv
        gpus = []
        for uuid, handle in self.handles.items():
            serial = self._try(uuid, "serial", nv.nvmlDeviceGetSerial, handle)
            memory = nv.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                GpuInfo(
                    uuid=uuid,
                    name=_text(nv.nvmlDeviceGetName(handle)),
                    memory_bytes=int(memory.total),
                    serial=None if serial is None else _text(serial),
                    pci_bus_id=_text(nv.nvmlDeviceGetPciInfo(handle).busId),
                    driver_version=self.driver_version,
                )
            )
        return gpus

    def capabilities(self) -> dict[str, dict[str, bool]]:
        # Probe every feature once so the answer reflects this machine, not just what was used yet.
        self.sample(list(self.handles))
        return {
            uuid: {f: f not in self.unsupported.get(uuid, set()) for f in FEATURES} for uuid in self.handles
        }


def _sample_value(nv: Any, value_type: int, sample: Any) -> float:
    value = sample.sampleValue
    if value_type == nv.NVML_VALUE_TYPE_DOUBLE:
        return float(value.dVal)
    if value_type == nv.NVML_VALUE_TYPE_UNSIGNED_LONG:
        return float(value.ulVal)
    if value_type == nv.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG:
        return float(value.ullVal)
    if value_type == nv.NVML_VALUE_TYPE_SIGNED_LONG_LONG:
        return float(value.sllVal)
    return float(value.uiVal)
