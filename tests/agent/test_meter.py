"""Samples to interval reports: reset-aware energy, clock jumps, health."""

from __future__ import annotations

from datetime import timedelta

from metering.agent.backend import GpuSample
from metering.agent.meter import Meter


def s(energy: int | None = None, **kw: object) -> GpuSample:
    fields: dict[str, object] = {"uuid": "GPU-1", "present": True, "util_pct": (50.0,), "energy_mj": energy}
    fields.update(kw)
    return GpuSample(**fields)  # type: ignore[arg-type]


def run(meter: Meter, readings: list[tuple[float, float, GpuSample]]):
    for mono, wall, sample in readings:
        meter.observe([sample], mono, wall)
    return meter.close()


def test_energy_is_the_sum_of_counter_deltas():
    [r] = run(Meter(["GPU-1"]), [(0, 1000, s(1_000)), (5, 1005, s(3_000)), (10, 1010, s(6_000))])
    assert r.energy_mj == 5_000 and r.energy_resets == 0 and r.samples == 2


def test_an_energy_counter_reset_is_neither_negative_nor_huge():
    # The driver reloaded between 5 s and 10 s: the counter restarted at zero and reads 1500.
    [r] = run(
        Meter(["GPU-1"]),
        [(0, 0, s(900_000_000)), (5, 5, s(900_002_000)), (10, 10, s(1_500)), (15, 15, s(4_000))],
    )
    assert r.energy_mj == 2_000 + 1_500 + 2_500
    assert r.energy_resets == 1


def test_an_implausible_energy_jump_is_dropped_not_billed():
    # 10^12 mJ in 5 s would be 200 MW: a glitch (e.g. a counter that did not restart at zero).
    [r] = run(Meter(["GPU-1"]), [(0, 0, s(1_000)), (5, 5, s(10**12)), (10, 10, s(10**12 + 2_000))])
    assert r.energy_mj == 2_000 and r.energy_resets == 1


def test_a_backward_counter_that_is_itself_implausible_counts_nothing():
    [r] = run(Meter(["GPU-1"]), [(0, 0, s(10**13)), (5, 5, s(10**12))])
    assert r.energy_mj == 0 and r.energy_resets == 1


def test_a_wall_clock_jump_neither_stretches_nor_shrinks_the_interval():
    meter = Meter(["GPU-1"])
    # Wall clock steps one hour forward 20 s in, monotonic carries on.
    [first] = run(meter, [(0, 1000, s()), (20, 1020, s()), (40, 4640, s()), (60, 4660, s())])
    assert first.monotonic_s == 60.0
    assert first.end - first.start == timedelta(seconds=60)
    assert first.clock_step_s == 0.0
    # The next interval follows the stepped clock, and says it stepped.
    for mono in (80, 100, 120):
        meter.observe([s()], mono, 4600 + mono)
    [second] = meter.close()
    assert second.monotonic_s == 60.0
    assert second.start.timestamp() == 4660
    assert second.clock_step_s == 3600.0


def test_a_backward_wall_clock_jump_is_followed_and_flagged():
    meter = Meter(["GPU-1"])
    run(meter, [(0, 5000, s()), (30, 5030, s()), (60, 1060, s())])
    for mono in (90, 120):
        meter.observe([s()], mono, 1000 + mono)
    [second] = meter.close()
    assert second.monotonic_s == 60.0
    assert second.clock_step_s == -4000.0


def test_small_wall_clock_drift_keeps_intervals_contiguous():
    meter = Meter(["GPU-1"])
    [first] = run(meter, [(0, 1000, s()), (60, 1060.3, s())])
    for mono in (90, 120):
        meter.observe([s()], mono, 1000.3 + mono)
    [second] = meter.close()
    assert second.start == first.end and second.clock_step_s == 0.0


def test_a_critical_xid_makes_the_interval_unhealthy_but_an_application_xid_does_not():
    [bad] = run(Meter(["GPU-1"]), [(0, 0, s()), (5, 5, s(xids=(79,))), (10, 10, s())])
    assert not bad.healthy and bad.present and bad.xid_errors == (79,)
    [app] = run(Meter(["GPU-1"]), [(0, 0, s()), (5, 5, s(xids=(13, 43))), (10, 10, s())])
    assert app.healthy and app.xid_errors == (13, 43)


def test_a_lost_gpu_is_unhealthy_and_a_missing_one_is_not_present():
    [lost] = run(Meter(["GPU-1"]), [(0, 0, s()), (5, 5, s(lost=True, util_pct=()))])
    assert lost.present and not lost.healthy
    [gone] = run(Meter(["GPU-1"]), [(0, 0, s()), (5, 5, GpuSample("GPU-1", present=False))])
    assert not gone.present and not gone.healthy


def test_unsupported_readings_are_null_not_zero():
    sample = GpuSample("GPU-1", present=True, util_supported=False)
    [r] = run(Meter(["GPU-1"]), [(0, 0, sample), (5, 5, sample)])
    assert r.util_mean_pct is None and r.energy_mj is None and r.power_mean_mw is None
    assert r.ecc_uncorrected_delta is None and r.processes_max is None


def test_a_checkpoint_restores_the_open_interval_exactly():
    meter = Meter(["GPU-1"])
    for mono in (0, 5, 10):
        meter.observe([s(1000 + int(mono) * 100)], mono, 1000 + mono)
    restored = Meter.from_state(meter.to_state())
    assert restored.close() == meter.close()
