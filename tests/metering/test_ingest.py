"""POST /api/v1/metering/reports and /enroll: every check of docs/metering-agent.md §4-5, in order."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from marketplace.models import Gpu
from metering import services
from metering.agent.protocol import REPORTS_PATH, canonical_json, signature_headers
from metering.models import (
    Anomaly,
    AnomalyKind,
    ChainGap,
    EnrolmentToken,
    Envelope,
    EnvelopeStatus,
    HostKey,
    IntervalReport,
    KeyStatus,
)
from tests.factories import GpuFactory, HostFactory
from tests.metering.conftest import GPU_A, GPU_B, START
from tests.metering.wire import enroll, post_raw, report, wire_host


@pytest.fixture
def agent(client, seller):
    return wire_host(client, seller.team, seller.host)


def both(start: dt.datetime) -> list:
    return [report(GPU_A, start), report(GPU_B, start)]


def minute(i: int) -> dt.datetime:
    return START + dt.timedelta(minutes=i)


def test_an_accepted_envelope_stores_every_report_and_acks_its_seq(agent):
    answer = agent.post(agent.envelope(both(minute(0))))
    assert answer.status_code == 200
    assert answer.json() == {"acked_seq": 1, "status": "accepted"}
    stored = IntervalReport.objects.order_by("gpu__uuid")
    assert [(r.gpu.uuid, r.monotonic_ms, r.energy_mj) for r in stored] == [
        (GPU_A, 60_000, 18_000_000),
        (GPU_B, 60_000, 18_000_000),
    ]


def test_every_value_of_a_report_is_stored_as_sent(agent):
    # The COPY path writes binary values: XIDs as JSON, nulls for unsupported features, negative
    # clock steps, fractional percentages and large counters must read back exactly.
    busy = report(
        GPU_A,
        minute(0) + dt.timedelta(milliseconds=123),
        seconds=59.877,
        util_mean_pct=12.25,
        util_max_pct=100.0,
        mem_used_max_bytes=85_520_809_984,
        energy_mj=17_963_100,
        xid_errors=(79, 13, 79),
        ecc_uncorrected_delta=2,
        processes_max=7,
        healthy=False,
        energy_resets=1,
        clock_step_s=-3.5,
    )
    bare = report(
        GPU_B,
        minute(0),
        util_mean_pct=None,
        util_max_pct=None,
        mem_used_max_bytes=None,
        energy_mj=None,
        power_mean_mw=None,
        ecc_uncorrected_delta=None,
        processes_max=None,
        present=False,
        healthy=False,
    )
    assert agent.post(agent.envelope([busy, bare])).status_code == 200
    columns = (
        "position", "gpu__uuid", "start", "end", "monotonic_ms", "clock_step_ms", "present", "healthy",
        "util_mean_pct", "util_max_pct", "mem_used_max_bytes", "energy_mj", "power_mean_mw", "xid_errors",
        "ecc_uncorrected_delta", "processes_max", "samples", "energy_resets",
    )  # fmt: skip
    stored = list(IntervalReport.objects.order_by("position").values_list(*columns))
    assert stored == [
        (0, GPU_A, busy.start, busy.end, 59_877, -3_500, True, False, 12.25, 100.0, 85_520_809_984,
         17_963_100, 300_000, [79, 13, 79], 2, 7, 12, 1),
        (1, GPU_B, bare.start, bare.end, 60_000, 0, False, False, None, None, None, None, None, [],
         None, None, 12, 0),
    ]  # fmt: skip


def test_a_replayed_envelope_counts_once(agent):
    body = agent.envelope(both(minute(0)))
    assert agent.post(body).json()["status"] == "accepted"
    again = agent.post(body)  # re-signed with a fresh time, as an agent that missed the ack would
    assert again.status_code == 200
    assert again.json() == {"acked_seq": 1, "status": "duplicate"}
    assert IntervalReport.objects.count() == 2


def test_any_changed_byte_fails_the_signature_and_stores_nothing(agent):
    body = agent.envelope(both(minute(0)))
    headers = signature_headers(agent.key, agent.agent_id, int(time.time()), body)
    for i in (0, len(body) // 2, len(body) - 1):
        altered = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :]
        answer = post_raw(agent.client, altered, headers)
        assert answer.status_code == 401
        assert answer.json()["code"] == "bad_signature"
    assert not Envelope.objects.exists()


def test_another_key_cannot_sign_for_a_host(agent):
    answer = agent.post(agent.envelope(both(minute(0))), key=Ed25519PrivateKey.generate())
    assert (answer.status_code, answer.json()["code"]) == (401, "bad_signature")


def test_a_stale_signing_time_is_refused_as_clock_skew(agent):
    answer = agent.post(agent.envelope(both(minute(0))), timestamp=time.time() - 301)
    assert (answer.status_code, answer.json()["code"]) == (401, "clock_skew")
    assert not Envelope.objects.exists()


def test_missing_signature_headers_are_refused(agent):
    body = agent.envelope(both(minute(0)))
    answer = post_raw(agent.client, body, {"Gridx-Host": agent.agent_id})
    assert (answer.status_code, answer.json()["code"]) == (400, "missing_header")
    assert answer["Content-Type"] == "application/problem+json"


def test_an_unknown_host_is_refused(agent, client):
    body = agent.envelope(both(minute(0)))
    headers = signature_headers(agent.key, "h_nobody", int(time.time()), body)
    answer = post_raw(client, body, headers)
    assert (answer.status_code, answer.json()["code"]) == (401, "unknown_host")


def test_a_revoked_host_is_refused_and_keeps_what_it_sent(agent, seller):
    assert agent.post(agent.envelope(both(minute(0)))).status_code == 200
    assert services.host_revoke(team=seller.team, actor=seller.owner, host_id=seller.host.pk) == 1
    answer = agent.post(agent.envelope(both(minute(1))))
    assert (answer.status_code, answer.json()["code"]) == (403, "key_revoked")
    assert IntervalReport.objects.count() == 2


def test_a_malformed_body_is_refused_naming_the_field_and_consumes_its_seq(agent):
    raw = canonical_json(
        {
            "format": "gridx.metering/v1",
            "host_id": agent.agent_id,
            "seq": 1,
            "prev_hash": "0" * 64,
            "agent_version": "0.1.0",
            "created_at": "2026-01-01T00:00:00.000Z",
            "reports": [{"gpu_uuid": GPU_A}],
        }
    )
    answer = agent.post(raw)
    assert answer.status_code == 400
    problem = answer.json()
    assert problem["code"] == "malformed"
    assert (problem["errors"][0]["field"], problem["errors"][0]["code"]) == (
        "reports[0].clock_step_s",
        "required",
    )
    assert problem["acked_seq"] == 1  # consumed: one bad envelope does not block the chain
    agent.seq, agent.prev = 1, "f" * 64  # nothing to chain against: its hash is unknown
    assert agent.post(agent.envelope(both(minute(1)))).json() == {"acked_seq": 2, "status": "accepted"}


def test_a_body_naming_another_host_is_refused(agent):
    body = agent.envelope(both(minute(0)))
    other = body.replace(agent.agent_id.encode(), b"h_" + b"0" * (len(agent.agent_id) - 2))
    answer = agent.post(other)
    assert (answer.status_code, answer.json()["code"]) == (400, "host_mismatch")


def test_other_bytes_under_a_stored_seq_are_a_conflict(agent):
    agent.post(agent.envelope(both(minute(0))))
    forged = agent.envelope(both(minute(5)), seq=1, prev="0" * 64)
    answer = agent.post(forged)
    assert (answer.status_code, answer.json()["code"], answer.json()["acked_seq"]) == (409, "seq_conflict", 1)


def test_a_broken_chain_is_refused_and_raised_to_staff(agent, seller):
    agent.post(agent.envelope(both(minute(0))))
    answer = agent.post(agent.envelope(both(minute(1)), seq=2, prev="a" * 64))
    assert (answer.status_code, answer.json()["code"]) == (409, "chain_broken")
    assert Envelope.objects.filter(seq=2).count() == 0
    anomaly = Anomaly.objects.get()
    assert (anomaly.kind, anomaly.status, anomaly.host_id) == (
        AnomalyKind.CHAIN_BROKEN,
        "open",
        seller.host.pk,
    )


def test_a_successor_that_does_not_chain_to_a_late_envelope_breaks_the_chain(agent):
    first = agent.envelope(both(minute(0)))
    agent.post(agent.envelope(both(minute(1)), seq=2, prev="b" * 64))  # arrives first: a gap before it
    answer = agent.post(first)
    assert (answer.status_code, answer.json()["code"]) == (409, "chain_broken")


def test_a_gap_is_recorded_and_the_ack_waits_for_it(agent):
    one = agent.envelope(both(minute(0)))
    two = agent.envelope(both(minute(1)))
    three = agent.envelope(both(minute(2)))
    assert agent.post(three).json() == {"acked_seq": 0, "status": "accepted"}
    gap = ChainGap.objects.get()
    assert (gap.first_seq, gap.last_seq) == (1, 2)
    assert agent.post(one).json()["acked_seq"] == 1
    assert agent.post(two).json()["acked_seq"] == 3


def test_an_unknown_gpu_is_refused_and_the_seq_consumed(agent):
    answer = agent.post(agent.envelope([report(GPU_A, minute(0)), report("GPU-unknown", minute(0))]))
    problem = answer.json()
    assert (answer.status_code, problem["code"], problem["acked_seq"]) == (422, "unknown_gpu", 1)
    assert problem["errors"] == [
        {"field": "reports[1].gpu_uuid", "code": "unknown_gpu", "message": "GPU-unknown is not enrolled"}
    ]
    assert Envelope.objects.get().status == EnvelopeStatus.REFUSED
    assert not IntervalReport.objects.exists()
    assert agent.post(agent.envelope(both(minute(1)))).json()["acked_seq"] == 2


def test_a_gpu_of_another_host_is_refused_and_flagged_as_a_duplicate_uuid(agent, seller):
    other_host = HostFactory(cluster=seller.host.cluster)
    stolen = GpuFactory(host=other_host)
    answer = agent.post(agent.envelope([report(stolen.uuid, minute(0))]))
    assert (answer.status_code, answer.json()["code"]) == (422, "foreign_gpu")
    anomaly = Anomaly.objects.get()
    assert (anomaly.kind, anomaly.gpu_id) == (AnomalyKind.DUPLICATE_UUID, stolen.pk)


def test_an_interval_in_the_future_is_refused(agent):
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    answer = agent.post(agent.envelope([report(GPU_A, soon)]))
    problem = answer.json()
    assert (answer.status_code, problem["code"]) == (422, "interval_in_future")
    assert problem["errors"][0]["field"] == "reports[0].end"


# --- enrolment ----------------------------------------------------------------------------------


def test_enrolment_registers_the_key_for_the_declared_gpus_and_uses_the_token(client, seller):
    issued = services.enrolment_token_create(team=seller.team, actor=seller.owner, host_id=seller.host.pk)
    answer = enroll(client, issued.token, [GPU_A, GPU_B])
    assert answer.status_code == 201
    assert answer.json()["gpus"] == sorted([GPU_A, GPU_B])
    key = HostKey.objects.get(agent_id=answer.json()["host_id"])
    assert (key.host_id, key.status) == (seller.host.pk, KeyStatus.ACTIVE)
    again = enroll(client, issued.token, [GPU_A, GPU_B])
    assert (again.status_code, again.json()["code"]) == (410, "token_used")


def test_tokens_are_stored_hashed(seller):
    issued = services.enrolment_token_create(team=seller.team, actor=seller.owner, host_id=seller.host.pk)
    row = EnrolmentToken.objects.get()
    assert issued.token not in (row.token_sha256,) and len(row.token_sha256) == 64


def test_an_unknown_or_expired_token_is_refused(client, seller):
    assert enroll(client, "gxe_nope", [GPU_A, GPU_B]).json()["code"] == "token_invalid"
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    issued = services.enrolment_token_create(team=seller.team, actor=None, host_id=seller.host.pk, now=past)
    answer = enroll(client, issued.token, [GPU_A, GPU_B])
    assert (answer.status_code, answer.json()["code"]) == (410, "token_expired")


def test_gpus_that_do_not_match_the_declared_inventory_are_listed_and_the_token_kept(client, seller):
    elsewhere = GpuFactory(host=HostFactory(cluster=seller.host.cluster))
    issued = services.enrolment_token_create(team=seller.team, actor=None, host_id=seller.host.pk)
    answer = enroll(client, issued.token, [GPU_A, "GPU-undeclared", elsewhere.uuid])
    problem = answer.json()
    assert (answer.status_code, problem["code"]) == (422, "gpu_mismatch")
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [
        ("gpus[1].uuid", "not_declared"),
        ("gpus[2].uuid", "gpu_taken"),
        ("gpus", "missing"),
    ]
    assert GPU_B in problem["errors"][2]["message"]
    assert enroll(client, issued.token, [GPU_A, GPU_B]).status_code == 201


def test_a_token_for_another_teams_host_cannot_be_made(seller):
    from marketplace.errors import NotFound
    from tests.factories import TeamFactory

    with pytest.raises(NotFound):
        services.enrolment_token_create(team=TeamFactory(), actor=None, host_id=seller.host.pk)


def test_rotating_a_key_retires_the_old_one_once_the_agent_enrols_again(client, agent, seller):
    assert agent.post(agent.envelope(both(minute(0)))).status_code == 200
    issued = services.key_rotate(team=seller.team, actor=seller.owner, host_id=seller.host.pk)
    assert agent.post(agent.envelope(both(minute(1)))).status_code == 200  # still valid meanwhile
    new_key = Ed25519PrivateKey.generate()
    assert enroll(client, issued.token, [GPU_A, GPU_B], new_key).status_code == 201
    answer = agent.post(agent.envelope(both(minute(2))))
    assert (answer.status_code, answer.json()["code"]) == (403, "key_revoked")
    assert HostKey.objects.filter(host=seller.host, status=KeyStatus.ACTIVE).count() == 1


def test_get_is_not_allowed_on_the_agent_endpoints(client):
    assert client.get(REPORTS_PATH).status_code == 405


def test_a_gpu_declared_after_enrolment_is_not_foreign(agent, seller):
    late = GpuFactory(host=seller.host)
    assert agent.post(agent.envelope([report(late.uuid, minute(0))])).status_code == 200
    assert Gpu.objects.filter(host=seller.host).count() == 3
