"""The agent with the fake backend against the live reference server."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import Counter

import pytest

from metering.agent.outbox import Outbox
from metering.agent.protocol import REPORTS_PATH, signature_headers
from metering.agent.runner import Timing
from metering.agent.uploader import Outcome
from tests.agent.conftest import GPU_A, GPU_B


def delivered(server, host_id):
    """Per GPU: the list of (start, monotonic_s, energy_mj) the server stored."""
    out: dict[str, list] = {GPU_A: [], GPU_B: []}
    for host, r in server.reports():
        assert host == host_id
        out[r.gpu_uuid].append(r)
    return out


def assert_once_each(reports):
    starts = Counter((r.gpu_uuid, r.start) for r in reports)
    assert max(starts.values()) == 1, "an interval arrived twice"
    for a, b in zip(reports, reports[1:], strict=False):
        assert a.end <= b.start, "intervals of one GPU overlap"


def test_a_long_outage_loses_nothing_and_delivers_every_interval_once(make_agent, server):
    agent = make_agent()
    agent.run(600)
    server.down()
    agent.run(3 * 3600)  # three hours unreachable: 180 envelopes wait in the outbox
    assert agent.outbox.status().queued == 180
    assert "unreachable" in (agent.outbox.status().last_error or "")
    server.up()
    assert agent.uploader.drain() is Outcome.EMPTY
    agent.run(600)
    got = delivered(server, agent.host_id)
    total = 600 + 3 * 3600 + 600
    for uuid in (GPU_A, GPU_B):
        assert_once_each(got[uuid])
        assert len(got[uuid]) == total // 60
        assert sum(r.monotonic_s for r in got[uuid]) == pytest.approx(total)
        energy = sum(r.energy_mj for r in got[uuid])
        assert energy == pytest.approx(agent.scenario.energy_mj(uuid, 0, total), abs=len(got[uuid]) * 24)
    assert agent.outbox.status().queued == 0
    assert server.acked(agent.host_id) == total // 60


def test_the_server_being_slow_to_ack_never_duplicates(make_agent, server):
    agent = make_agent()
    agent.run(300, send=False)
    # The same envelopes are sent twice (e.g. the ack was lost in transit): the server counts them once.
    queued = agent.outbox.next_after(0)
    assert queued is not None
    agent.uploader.send_once()
    agent.uploader.stored_through = 0
    agent.outbox.db.execute(
        "INSERT INTO envelope (seq, body, created_at) VALUES (?, ?, '')", (1, queued.body)
    )
    agent.uploader.drain()
    assert server.duplicates == 1
    assert len(server.accepted) == 5


def post(server, host_id, key, body, timestamp=None):
    import time

    headers = signature_headers(key, host_id, int(timestamp or time.time()), body)
    request = urllib.request.Request(server.url + REPORTS_PATH, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_replayed_envelope_counts_once(make_agent, server):
    agent = make_agent()
    agent.run(60, send=False)
    body = agent.outbox.next_after(0).body
    agent.uploader.drain()
    for _ in range(5):
        status, answer = post(server, agent.host_id, agent.state.load_key(), body)
        assert status == 200 and b'"duplicate"' in answer
    assert len(server.accepted) == 1 and server.duplicates == 5


def test_a_changed_byte_fails_the_signature(make_agent, server):
    agent = make_agent()
    agent.run(60, send=False)
    body = agent.outbox.next_after(0).body
    key = agent.state.load_key()
    import time

    headers = signature_headers(key, agent.host_id, int(time.time()), body)
    forged = body[:-3] + bytes([body[-3] ^ 1]) + body[-2:]
    status, problem = server.handle(REPORTS_PATH, headers, forged)
    assert status == 401 and problem["code"] == "bad_signature"
    assert server.accepted == []


def test_a_stale_signature_is_refused_but_the_agent_re_signs_on_resend(make_agent, server):
    agent = make_agent()
    agent.run(60, send=False)
    body = agent.outbox.next_after(0).body
    status, answer = post(server, agent.host_id, agent.state.load_key(), body, timestamp=1_000_000_000)
    assert status == 401 and b"clock_skew" in answer
    assert agent.uploader.drain() is Outcome.EMPTY  # fresh signing time: accepted
    assert len(server.accepted) == 1


def test_a_clock_jump_does_not_stretch_or_shrink_delivered_time(make_agent, server):
    agent = make_agent(
        faults=[
            {"at": 610, "kind": "wall_jump", "seconds": 3600},
            {"at": 1210, "kind": "wall_jump", "seconds": -7200},
        ]
    )
    agent.run(1800)
    got = delivered(server, agent.host_id)
    for uuid in (GPU_A, GPU_B):
        assert sum(r.monotonic_s for r in got[uuid]) == pytest.approx(1800)
        assert all(r.monotonic_s == 60.0 and (r.end - r.start).total_seconds() == 60.0 for r in got[uuid])
        steps = [r.clock_step_s for r in got[uuid] if r.clock_step_s]
        assert steps == [3600.0, -7200.0]


def test_an_energy_counter_reset_and_a_driver_reload_give_true_energy(make_agent, server):
    agent = make_agent(
        faults=[
            {"at": 122, "kind": "energy_reset", "gpu": GPU_A},
            {"at": 303, "kind": "driver_reload", "duration": 10},
        ]
    )
    agent.run(600)
    got = delivered(server, agent.host_id)
    for uuid in (GPU_A, GPU_B):
        energies = [r.energy_mj for r in got[uuid]]
        assert all(0 <= e < 1000 * 60 * 1000 for e in energies)  # under 1 kW for a minute
        # What a counter cannot show: energy between the last reading and the reset (120-122 s for
        # A's reset, 300-303 s for the reload). Everything else is counted, exactly once.
        unobservable = agent.scenario.energy_mj(uuid, 300, 303)
        if uuid == GPU_A:
            unobservable += agent.scenario.energy_mj(uuid, 120, 122)
        truth = agent.scenario.energy_mj(uuid, 0, 600) - unobservable
        assert sum(energies) == pytest.approx(truth, abs=len(energies) * 24)
        assert sum(r.energy_resets for r in got[uuid]) == (2 if uuid == GPU_A else 1)
    reload_minute = [r for r in got[GPU_A] if r.start.timestamp() - got[GPU_A][0].start.timestamp() == 300]
    assert not reload_minute[0].present


def test_faults_mark_intervals_unhealthy(make_agent, server):
    agent = make_agent(
        faults=[
            {"at": 70, "kind": "xid", "gpu": GPU_A, "code": 79},
            {"at": 200, "kind": "gpu_lost", "gpu": GPU_B, "until": 250},
            {"at": 400, "kind": "ecc", "gpu": GPU_A, "count": 3},
        ]
    )
    agent.run(600)
    got = delivered(server, agent.host_id)
    a_bad = [i for i, r in enumerate(got[GPU_A]) if not r.healthy]
    b_bad = [i for i, r in enumerate(got[GPU_B]) if not r.healthy]
    assert a_bad == [1] and got[GPU_A][1].xid_errors == (79,)
    assert b_bad == [3, 4]
    assert [r.ecc_uncorrected_delta for r in got[GPU_A]][6] == 3
    assert all(r.ecc_uncorrected_delta is None for r in got[GPU_B])  # unsupported: null, not 0


def test_a_report_for_a_gpu_the_server_does_not_know_is_refused_and_kept_aside(make_agent, server):
    agent = make_agent()
    agent.runner.uuids.append("GPU-not-enrolled")
    agent.runner.meter = type(agent.runner.meter)(agent.runner.uuids)
    agent.runner.next_boundary = None
    agent.runner.tick()
    agent.run(60, send=False)
    agent.uploader.drain()
    status = agent.outbox.status()
    assert status.refused == 1 and status.queued == 0 and status.last_ack_seq == 1
    assert "unknown_gpu" in (status.last_error or "")
    # The chain goes on: the next envelope is accepted.
    agent.runner.uuids.remove("GPU-not-enrolled")
    agent.runner.meter = type(agent.runner.meter)(agent.runner.uuids)
    agent.runner.next_boundary = None
    agent.runner.tick()
    agent.run(60)
    assert len(server.accepted) == 1 and server.acked(agent.host_id) == 2


def test_a_full_outbox_warns_and_drops_new_reports_without_breaking_the_chain(make_agent, server, caplog):
    agent = make_agent()
    agent.outbox.max_envelopes = 3
    server.down()
    agent.run(300)
    status = agent.outbox.status()
    assert status.queued == 3 and status.last_seq == 3 and status.dropped_reports == 4
    assert "outbox is FULL" in caplog.text
    server.up()
    agent.uploader.drain()
    agent.run(60)
    assert server.acked(agent.host_id) == 4  # seq 4 follows seq 3: no hole in the chain


def test_the_outbox_survives_reopening(make_agent, server, tmp_path):
    agent = make_agent()
    server.down()
    agent.run(180)
    agent.outbox.close()
    again = Outbox(agent.state.outbox_path)
    assert again.status().queued == 3 and again.status().last_seq == 3
    again.close()


def test_a_broken_chain_blocks_sending_and_keeps_everything(make_agent, server):
    agent = make_agent()
    agent.run(120)
    agent.run(60, send=False)
    # Someone else holding this host's key sent a different seq 2 earlier: our 3 no longer chains.
    server.hosts[agent.host_id].hashes[2] = "f" * 64
    assert agent.uploader.drain() is Outcome.BLOCKED
    status = agent.outbox.status()
    assert status.queued == 1 and "restored from a backup" in (status.last_error or "")


def test_short_intervals_for_fast_tests_work_the_same(make_agent, server):
    agent = make_agent(timing=Timing(sample_seconds=1, interval_seconds=3))
    agent.run(30)
    got = delivered(server, agent.host_id)
    assert len(got[GPU_A]) == 10 and all(r.monotonic_s == 3.0 for r in got[GPU_A])
