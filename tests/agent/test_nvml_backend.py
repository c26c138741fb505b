"""The nvml backend against a scripted stand-in of the pynvml module (no GPU, no driver needed)."""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from metering.agent.backend import BackendError
from metering.agent.nvml import NO_DRIVER_MESSAGE, NvmlBackend


class StandIn:
    """Looks like `pynvml` to the backend: the real error classes and constants, scripted calls.

    `script[(uuid, call)]` is a value, or an exception *class* to raise, or a callable.
    """

    def __init__(self, uuids: list[str], script: dict[tuple[str, str], Any] | None = None) -> None:
        for name in dir(pynvml):
            if name.startswith(("NVMLError", "NVML_", "nvmlMemory_v2", "nvmlEventType")):
                setattr(self, name, getattr(pynvml, name))
        self.uuids = uuids
        self.script = script or {}
        self.calls: list[str] = []
        self.init_error: type[Exception] | None = None
        self.events: list[Any] = []

    def _do(self, handle: Any, call: str, default: Any) -> Any:
        self.calls.append(call)
        value = self.script.get((handle, call), self.script.get(("*", call), default))
        if isinstance(value, type) and issubclass(value, Exception):
            raise value()
        return value() if callable(value) else value

    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")
        if self.init_error is not None:
            raise self.init_error()

    def nvmlShutdown(self) -> None:
        self.calls.append("nvmlShutdown")

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.uuids)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        return self.uuids[i]

    def nvmlDeviceGetUUID(self, h: str) -> bytes:
        return h.encode()  # older nvidia-ml-py returned bytes; the backend must cope

    def nvmlDeviceGetName(self, h: str) -> str:
        return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetSerial(self, h: str) -> str:
        return self._do(h, "serial", "1652921000000")

    def nvmlDeviceGetPciInfo(self, h: str) -> Any:
        return SimpleNamespace(busId=b"00000000:18:00.0")

    def nvmlDeviceGetMemoryInfo(self, h: str, version: int | None = None) -> Any:
        return self._do(h, "memory", SimpleNamespace(total=85_520_809_984, used=7 * 2**30))

    def nvmlDeviceGetSamples(self, h: str, kind: int, last_ts: int) -> Any:
        self.script.setdefault((h, "last_ts_seen"), []).append(last_ts)
        return self._do(h, "samples", lambda: (pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, self._samples(last_ts)))

    def _samples(self, last_ts: int) -> list[Any]:
        # The driver's ring buffer: one sample per 1000 µs tick; only those newer than last_ts.
        ring = [
            SimpleNamespace(timeStamp=t, sampleValue=SimpleNamespace(uiVal=t % 100))
            for t in (1000, 2000, 3000)
        ]
        new = [s for s in ring if s.timeStamp > last_ts]
        if not new:
            raise pynvml.NVMLError_NotFound()
        return new

    def nvmlDeviceGetUtilizationRates(self, h: str) -> Any:
        return self._do(h, "util", SimpleNamespace(gpu=42, memory=10))

    def nvmlDeviceGetPowerUsage(self, h: str) -> int:
        return self._do(h, "power", 350_000)

    def nvmlDeviceGetTotalEnergyConsumption(self, h: str) -> int:
        return self._do(h, "energy", 123_456_789)

    def nvmlDeviceGetTotalEccErrors(self, h: str, kind: int, counter: int) -> int:
        return self._do(h, "ecc", 0)

    def nvmlDeviceGetComputeRunningProcesses(self, h: str) -> list[Any]:
        return self._do(h, "processes", [SimpleNamespace(pid=1)])

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        return uuid

    def nvmlEventSetCreate(self) -> str:
        return "set"

    def nvmlDeviceRegisterEvents(self, h: str, types: int, event_set: str) -> None:
        self._do(h, "register", None)

    def nvmlEventSetWait_v2(self, event_set: str, timeout_ms: int) -> Any:
        if self.events:
            return self.events.pop(0)
        time.sleep(0.01)
        raise pynvml.NVMLError_Timeout()

    def nvmlEventSetFree(self, event_set: str) -> None:
        return None


def test_a_healthy_gpu_gives_every_reading():
    nv = StandIn(["GPU-1"])
    backend = NvmlBackend(nv, xid_thread=False)
    [s] = backend.sample(["GPU-1"])
    assert s.present and not s.lost
    assert s.util_pct == (0.0, 0.0, 0.0) and s.power_mw == 350_000 and s.energy_mj == 123_456_789
    assert s.mem_used_bytes == 7 * 2**30 and s.ecc_uncorrected == 0 and s.processes == 1
    [info] = backend.inventory()
    assert (
        info.uuid == "GPU-1" and info.pci_bus_id == "00000000:18:00.0" and info.driver_version == "550.54.15"
    )


def test_utilisation_samples_are_polled_from_the_last_timestamp_seen():
    nv = StandIn(["GPU-1"])
    backend = NvmlBackend(nv, xid_thread=False)
    first = backend.sample(["GPU-1"])[0]
    second = backend.sample(["GPU-1"])[0]
    assert len(first.util_pct) == 3
    assert second.util_pct == () and second.util_supported  # NotFound: nothing new, not unsupported
    assert nv.script[("GPU-1", "last_ts_seen")] == [0, 3000]


def test_not_supported_means_absent_and_is_not_asked_again():
    nv = StandIn(
        ["GPU-1"],
        {
            ("GPU-1", "energy"): pynvml.NVMLError_NotSupported,
            ("GPU-1", "ecc"): pynvml.NVMLError_NotSupported,
            ("GPU-1", "samples"): pynvml.NVMLError_NotSupported,
            ("GPU-1", "serial"): pynvml.NVMLError_NotSupported,
            ("GPU-1", "processes"): pynvml.NVMLError_NoPermission,
        },
    )
    backend = NvmlBackend(nv, xid_thread=False)
    for _ in range(3):
        [s] = backend.sample(["GPU-1"])
        assert s.present and not s.lost
        assert s.energy_mj is None and s.ecc_uncorrected is None and s.processes is None
        assert s.util_pct == (42.0,)  # fell back to nvmlDeviceGetUtilizationRates
    assert nv.calls.count("energy") == 1 and nv.calls.count("samples") == 1
    assert backend.inventory()[0].serial is None
    caps = backend.capabilities()["GPU-1"]
    assert caps["power"] and not caps["energy"] and not caps["ecc"] and not caps["serial"]


def test_gpu_is_lost_means_unhealthy_not_a_crash():
    nv = StandIn(["GPU-1", "GPU-2"], {("GPU-1", "power"): pynvml.NVMLError_GpuIsLost})
    backend = NvmlBackend(nv, xid_thread=False)
    lost, fine = backend.sample(["GPU-1", "GPU-2"])
    assert lost.present and lost.lost
    assert fine.present and not fine.lost and fine.power_mw == 350_000


def test_a_gpu_that_is_not_on_the_host_is_not_present():
    backend = NvmlBackend(StandIn(["GPU-1"]), xid_thread=False)
    [s] = backend.sample(["GPU-gone"])
    assert not s.present


def test_a_driver_that_goes_away_makes_gpus_absent_then_nvml_is_restarted():
    nv = StandIn(["GPU-1"], {("GPU-1", "power"): pynvml.NVMLError_Uninitialized})
    backend = NvmlBackend(nv, xid_thread=False)
    [gone] = backend.sample(["GPU-1"])
    assert not gone.present and backend.needs_reinit
    del nv.script[("GPU-1", "power")]
    [back] = backend.sample(["GPU-1"])
    assert back.present and nv.calls.count("nvmlInit") == 2


def test_xid_events_arrive_through_the_event_thread():
    nv = StandIn(["GPU-1"])
    nv.events.append(
        SimpleNamespace(device="GPU-1", eventType=pynvml.nvmlEventTypeXidCriticalError, eventData=79)
    )
    backend = NvmlBackend(nv)
    try:
        deadline = time.monotonic() + 5
        xids: tuple[int, ...] = ()
        while not xids and time.monotonic() < deadline:
            time.sleep(0.02)
            xids = backend.sample(["GPU-1"])[0].xids
        assert xids == (79,)
    finally:
        backend.close()


def test_xid_events_not_supported_is_reported_as_a_capability():
    nv = StandIn(["GPU-1"], {("GPU-1", "register"): pynvml.NVMLError_NotSupported})
    backend = NvmlBackend(nv)
    try:
        assert backend.capabilities()["GPU-1"]["xid_events"] is False
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (pynvml.NVMLError_LibraryNotFound, NO_DRIVER_MESSAGE),
        (pynvml.NVMLError_DriverNotLoaded, "not loaded"),
        (pynvml.NVMLError_NoPermission, "no permission"),
    ],
)
def test_nvml_failing_to_start_is_a_clear_message(error, words):
    nv = StandIn(["GPU-1"])
    nv.init_error = error
    with pytest.raises(BackendError) as err:
        NvmlBackend(nv)
    assert words in str(err.value)


def test_the_real_pynvml_on_a_host_without_a_driver_gives_a_clear_message_not_a_traceback(tmp_path):
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA driver")
    result = subprocess.run(
        [sys.executable, "-m", "metering.agent.cli", "--state-dir", str(tmp_path), "selftest"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"gridx-agent: {NO_DRIVER_MESSAGE}"
    assert "Traceback" not in result.stderr
