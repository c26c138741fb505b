"""Delivered time: the pure timeline (Hypothesis) and delivery_compute/lease_delivery on the database."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.errors import Conflict, InvalidInput, NotFound
from metering import delivery, selectors, services
from metering.models import Anomaly, AnomalyKind, AnomalyStatus, DeliveryResult
from tests.factories import TeamFactory, UserFactory
from tests.metering.conftest import GPU_A, GPU_B, START, make_lease
from tests.metering.wire import report, wire_host

# --- the pure timeline ------------------------------------------------------------------------------

rows = st.lists(
    st.builds(
        delivery.ReportRow,
        chain=st.integers(1, 3),
        seq=st.integers(1, 50),
        position=st.integers(0, 3),
        start_ms=st.integers(0, 20_000),
        monotonic_ms=st.integers(1, 5_000),
        clock_step_ms=st.sampled_from([0, 0, 0, 3_000, -4_000]),
        present=st.booleans(),
        healthy=st.booleans(),
    ),
    max_size=30,
    unique_by=lambda r: (r.chain, r.seq, r.position),
)
moments = st.integers(-30_000, 50_000)


@given(rows, moments, moments)
def test_delivered_time_never_exceeds_the_window(reports, a, b):
    lo, hi = min(a, b), max(a, b)
    line = delivery.timeline(reports)
    assert 0 <= line.delivered_ms(lo, hi) + line.unhealthy_ms(lo, hi) <= hi - lo


@given(rows, moments, moments, moments)
def test_delivered_time_adds_up_over_adjacent_windows(reports, a, b, c):
    lo, mid, hi = sorted((a, b, c))
    line = delivery.timeline(reports)
    assert line.delivered_ms(lo, hi) == line.delivered_ms(lo, mid) + line.delivered_ms(mid, hi)


@given(rows, st.randoms(use_true_random=False))
def test_the_order_reports_arrive_in_does_not_matter(reports, rnd):
    shuffled = list(reports)
    rnd.shuffle(shuffled)
    assert delivery.timeline(shuffled) == delivery.timeline(reports)


@given(rows)
def test_a_report_sent_twice_counts_once(reports):
    assert delivery.timeline(reports + reports) == delivery.timeline(reports)


@given(
    st.lists(st.integers(1_000, 60_000), min_size=1, max_size=20),
    st.lists(st.tuples(st.integers(0, 19), st.integers(-100_000, 100_000)), max_size=4),
)
def test_wall_clock_steps_neither_stretch_nor_shrink_a_chain(lengths, steps):
    step_at = dict(steps)
    plain, stepped, wall, wall_stepped = [], [], 0, 0
    for i, length in enumerate(lengths):
        step = step_at.get(i, 0)
        wall_stepped += step
        plain.append(delivery.ReportRow(1, i + 1, 0, wall, length, 0, True, True))
        stepped.append(delivery.ReportRow(1, i + 1, 0, wall_stepped, length, step, True, True))
        wall += length
        wall_stepped += length
    assert delivery.timeline(stepped) == delivery.timeline(plain)
    assert delivery.timeline(plain).delivered_ms(-(10**9), 10**9) == sum(lengths)


@given(rows, moments, moments)
def test_an_unhealthy_report_never_adds_delivered_time(reports, a, b):
    lo, hi = min(a, b), max(a, b)
    before = delivery.timeline(reports).delivered_ms(lo, hi)
    bad = delivery.ReportRow(9, 1, 0, (lo + hi) // 2, 1_000, 0, True, False)
    assert delivery.timeline([*reports, bad]).delivered_ms(lo, hi) <= before


def test_an_energy_counter_glitch_counts_no_energy_and_is_flagged():
    glitch = delivery.ReportRow(1, 1, 0, 0, 60_000, 0, True, True, energy_mj=10**12, power_mean_mw=300_000)
    assert delivery.plausible_energy_mj(glitch, max_power_w=5000) == 0
    assert delivery.energy_mismatch(glitch, tolerance_pct=25, slack_j=200, max_power_w=5000)


# --- on the database ---------------------------------------------------------------------------------


def minute(i: int) -> dt.datetime:
    return START + dt.timedelta(minutes=i)


@pytest.fixture
def agent(client, seller):
    return wire_host(client, seller.team, seller.host)


def test_unreported_and_unhealthy_time_is_not_delivered(agent, seller):
    for i in range(10):
        if i in (3, 4):
            continue  # no report at all for two minutes
        gpu_b_healthy = i != 7
        agent.post(
            agent.envelope([report(GPU_A, minute(i)), report(GPU_B, minute(i), healthy=gpu_b_healthy)])
        )
    lease = make_lease(seller, START, minute(10))
    got = selectors.lease_delivery(lease_id=lease.pk, start=START, end=minute(10), now=minute(60))
    assert got.leased_gpu_seconds == 2 * 600
    assert got.delivered_gpu_seconds == 2 * 480 - 60
    assert got.complete


def test_the_window_is_clipped_to_the_lease_and_is_not_final_before_the_grace_period(agent, seller):
    for i in range(10):
        agent.post(agent.envelope([report(GPU_A, minute(i)), report(GPU_B, minute(i))]))
    lease = make_lease(seller, minute(2), minute(8))
    got = selectors.lease_delivery(lease_id=lease.pk, start=START, end=minute(30), now=minute(9))
    assert (got.start, got.end, got.leased_gpu_seconds, got.delivered_gpu_seconds) == (
        minute(2),
        minute(8),
        720,
        720,
    )
    assert not got.complete
    outside = selectors.lease_delivery(lease_id=lease.pk, start=minute(20), end=minute(30), now=minute(40))
    assert (outside.leased_gpu_seconds, outside.delivered_gpu_seconds) == (0, 0)


def test_lease_delivery_adds_up_over_random_windows(agent, seller):
    rnd = random.Random(7)
    for i in range(30):
        agent.post(
            agent.envelope(
                [
                    report(GPU_A, minute(i), healthy=rnd.random() > 0.2),
                    report(GPU_B, minute(i) + dt.timedelta(seconds=7)),
                ]
            )
        )
    lease = make_lease(seller, minute(1), minute(29))
    for _ in range(5):
        cuts = sorted(rnd.sample(range(0, 31 * 60), 3))
        a, b, c = (START + dt.timedelta(seconds=s) for s in cuts)
        whole = selectors.lease_delivery(lease_id=lease.pk, start=a, end=c)
        parts = [selectors.lease_delivery(lease_id=lease.pk, start=x, end=y) for x, y in ((a, b), (b, c))]
        assert whole.leased_gpu_seconds == sum(p.leased_gpu_seconds for p in parts)
        assert whole.delivered_gpu_seconds == sum(p.delivered_gpu_seconds for p in parts)
        assert whole.delivered_gpu_seconds <= whole.leased_gpu_seconds


def test_a_bad_window_is_refused_naming_the_field(seller):
    lease = make_lease(seller, START, minute(10))
    with pytest.raises(InvalidInput) as caught:
        selectors.lease_delivery(lease_id=lease.pk, start=minute(5), end=minute(5))
    assert caught.value.errors[0].field == "end"
    with pytest.raises(NotFound):
        selectors.lease_delivery(lease_id=10**9, start=START, end=minute(5))


def test_delivery_compute_is_idempotent_and_takes_late_reports(agent, seller):
    lease = make_lease(seller, START, minute(10))
    for i in range(5):
        agent.post(agent.envelope([report(GPU_A, minute(i)), report(GPU_B, minute(i))]))
    services.delivery_compute(lease_id=lease.pk, now=minute(6))
    services.delivery_compute(lease_id=lease.pk, now=minute(6))
    assert DeliveryResult.objects.filter(lease=lease).count() == 2
    assert {r.delivered_ms for r in DeliveryResult.objects.all()} == {300_000}
    assert not any(r.complete for r in DeliveryResult.objects.all())
    for i in range(5, 10):
        agent.post(agent.envelope([report(GPU_A, minute(i)), report(GPU_B, minute(i))]))
    services.delivery_compute(lease_id=lease.pk, now=minute(60))
    assert {(r.delivered_ms, r.complete) for r in DeliveryResult.objects.all()} == {(600_000, True)}


def test_a_gpu_whose_reports_stop_for_the_rest_of_a_lease_is_flagged_once(agent, seller):
    lease = make_lease(seller, START, minute(60))
    for i in range(20):
        reports = [report(GPU_A, minute(i))] + ([report(GPU_B, minute(i))] if i < 5 else [])
        agent.post(agent.envelope(reports))
    services.delivery_compute(lease_id=lease.pk, now=minute(90))
    services.delivery_compute(lease_id=lease.pk, now=minute(95))
    stopped = Anomaly.objects.get(kind=AnomalyKind.REPORTS_STOPPED, gpu__uuid=GPU_B)
    assert (stopped.lease_id, stopped.start) == (lease.pk, minute(5))
    assert (
        Anomaly.objects.filter(kind=AnomalyKind.REPORTS_STOPPED, gpu__uuid=GPU_A).count() == 1
    )  # after 20 min
    got = selectors.lease_delivery(lease_id=lease.pk, start=START, end=minute(60), now=minute(90))
    assert got.open_anomalies == 2


def test_energy_far_from_power_times_time_is_flagged_for_staff(agent, seller):
    lease = make_lease(seller, START, minute(5))
    for i in range(5):
        energy = 60 * 300_000 * (3 if i == 2 else 1)
        agent.post(agent.envelope([report(GPU_A, minute(i), energy_mj=energy), report(GPU_B, minute(i))]))
    services.delivery_compute(lease_id=lease.pk, now=minute(30))
    flagged = Anomaly.objects.get(kind=AnomalyKind.ENERGY_MISMATCH)
    assert flagged.gpu.uuid == GPU_A
    assert flagged.detail == {"intervals": 1}


def test_staff_resolve_an_anomaly_once_with_a_note(agent, seller):
    lease = make_lease(seller, START, minute(60))
    services.delivery_compute(lease_id=lease.pk, now=minute(90))
    anomaly = selectors.anomaly_list(status="open", lease_id=lease.pk).first()
    staff = UserFactory(is_staff=True)
    with pytest.raises(InvalidInput):
        services.anomaly_resolve(anomaly_id=anomaly.pk, actor=staff, resolution="forgiven", note="x")
    with pytest.raises(NotFound):
        services.anomaly_resolve(anomaly_id=anomaly.pk, actor=UserFactory(), resolution="credited", note="x")
    done = services.anomaly_resolve(
        anomaly_id=anomaly.pk, actor=staff, resolution="credited", note="host down"
    )
    assert (done.status, done.resolved_by, done.resolution_note) == (
        AnomalyStatus.CREDITED,
        staff,
        "host down",
    )
    with pytest.raises(Conflict):
        services.anomaly_resolve(anomaly_id=anomaly.pk, actor=staff, resolution="accepted", note="again")
    assert selectors.anomaly_list(status="credited").count() == 1


def test_lease_usage_is_visible_to_the_buyer_and_the_seller_only(agent, seller):
    for i in range(3):
        agent.post(agent.envelope([report(GPU_A, minute(i)), report(GPU_B, minute(i))]))
    lease = make_lease(seller, START, minute(3))
    for team in (lease.team, seller.team):
        usage = selectors.lease_usage(team=team, lease_id=lease.pk, now=minute(30))
        assert usage["delivered_gpu_seconds"] == 360
        assert [g["uuid"] for g in usage["gpus"]] == sorted([GPU_A, GPU_B])
        assert usage["gpus"][0]["delivered"] == [
            {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:03:00Z"}
        ]
    with pytest.raises(NotFound):
        selectors.lease_usage(team=TeamFactory(), lease_id=lease.pk)
