"""The wire contract: canonical bodies, signatures over raw bytes, and field-named parse errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import event, given, settings
from hypothesis import strategies as st

from metering.agent.protocol import (
    CLOCK_SKEW_TOLERANCE_S,
    GENESIS_HASH,
    ClockSkewError,
    IntervalReport,
    ProtocolError,
    SignatureError,
    _parse_envelope_fast,
    canonical_json,
    envelope_body,
    envelope_hash,
    parse_envelope,
    parse_envelope_reference,
    parse_problem,
    parse_signed_headers,
    public_key_b64,
    sign,
    signature_headers,
    verify,
    verify_request,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def report(**changes: object) -> IntervalReport:
    fields: dict[str, object] = {
        "gpu_uuid": "GPU-1",
        "start": T0,
        "end": T0 + timedelta(seconds=60),
        "monotonic_s": 60.0,
        "present": True,
        "healthy": True,
        "util_mean_pct": 55.5,
        "util_max_pct": 99.0,
        "mem_used_max_bytes": 10**10,
        "energy_mj": 30_000_000,
        "power_mean_mw": 500_000,
        "xid_errors": (),
        "ecc_uncorrected_delta": 0,
        "processes_max": 1,
        "samples": 12,
    }
    fields.update(changes)
    return IntervalReport(**fields)  # type: ignore[arg-type]


def body(seq: int = 1, prev: str = GENESIS_HASH, reports: tuple[IntervalReport, ...] | None = None) -> bytes:
    return envelope_body(
        host_id="h_1",
        seq=seq,
        prev_hash=prev,
        agent_version="0.1.0",
        created_at=T0,
        reports=reports if reports is not None else (report(),),
    )


def mutate(raw: bytes, path: list[str | int], value: object) -> bytes:
    obj = json.loads(raw)
    target = obj
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return canonical_json(obj)


def test_the_body_is_canonical_json_and_round_trips_through_parse():
    raw = body()
    assert raw == canonical_json(json.loads(raw))
    env = parse_envelope(raw)
    assert env.seq == 1 and env.prev_hash == GENESIS_HASH and env.hash == envelope_hash(raw)
    assert env.reports == (report(),)


def test_a_signature_verifies_for_the_exact_body_and_time():
    key = Ed25519PrivateKey.generate()
    raw = body()
    verify(public_key_b64(key), 1_767_225_600, raw, sign(key, 1_767_225_600, raw))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_changing_any_byte_of_the_body_fails_the_signature(data: st.DataObject):
    key = Ed25519PrivateKey.generate()
    raw = body()
    header = sign(key, 100, raw)
    i = data.draw(st.integers(0, len(raw) - 1))
    flip = data.draw(st.integers(1, 255))
    forged = raw[:i] + bytes([raw[i] ^ flip]) + raw[i + 1 :]
    with pytest.raises(SignatureError) as err:
        verify(public_key_b64(key), 100, forged, header)
    assert err.value.code == "bad_signature"


def test_a_changed_signing_time_or_another_key_fails_the_signature():
    key = Ed25519PrivateKey.generate()
    raw = body()
    with pytest.raises(SignatureError):
        verify(public_key_b64(key), 101, raw, sign(key, 100, raw))
    with pytest.raises(SignatureError):
        verify(public_key_b64(Ed25519PrivateKey.generate()), 100, raw, sign(key, 100, raw))


def test_a_signing_time_more_than_five_minutes_off_is_refused_after_the_signature_is_checked():
    key = Ed25519PrivateKey.generate()
    raw = body()
    now = 1_000_000.0
    ok = parse_signed_headers(signature_headers(key, "h_1", int(now) - CLOCK_SKEW_TOLERANCE_S, raw))
    verify_request(public_key_b64(key), ok, raw, now=now)
    late = parse_signed_headers(signature_headers(key, "h_1", int(now) - CLOCK_SKEW_TOLERANCE_S - 1, raw))
    with pytest.raises(ClockSkewError) as err:
        verify_request(public_key_b64(key), late, raw, now=now)
    assert err.value.code == "clock_skew"
    # A forger with a stale timestamp learns "bad signature", not "stale".
    with pytest.raises(SignatureError) as forged:
        verify_request(public_key_b64(key), late, raw + b" ", now=now)
    assert forged.value.code == "bad_signature"


def test_resigning_an_old_body_later_keeps_the_body_and_its_hash():
    key = Ed25519PrivateKey.generate()
    raw = body()
    first = signature_headers(key, "h_1", 1000, raw)
    later = signature_headers(key, "h_1", 9000, raw)
    assert first["Gridx-Signature"] != later["Gridx-Signature"]
    verify_request(public_key_b64(key), parse_signed_headers(later), raw, now=9000)


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"Gridx-Timestamp": "1", "Gridx-Signature": "ed25519=AA=="}, "Gridx-Host"),
        ({"Gridx-Host": "h_1", "Gridx-Signature": "ed25519=AA=="}, "Gridx-Timestamp"),
        ({"Gridx-Host": "h_1", "Gridx-Timestamp": "1", "Gridx-Signature": "hmac=AA=="}, "Gridx-Signature"),
        ({"Gridx-Host": "h_1", "Gridx-Timestamp": "1", "Gridx-Signature": "ed25519=AA=="}, "Gridx-Signature"),
    ],
)
def test_malformed_signature_headers_name_the_header(headers, field):
    with pytest.raises(SignatureError) as err:
        parse_signed_headers(headers)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("path", "value", "field", "code"),
    [
        (["seq"], KeyError, "seq", "required"),
        (["seq"], True, "seq", "invalid_type"),
        (["seq"], 0, "seq", "invalid_value"),
        (["prev_hash"], "ab" * 32, "prev_hash", "invalid_value"),
        (["format"], "gridx.metering/v0", "format", "unsupported_format"),
        (["extra"], 1, "extra", "unknown_field"),
        (["created_at"], "2026-01-01T00:00:00", "created_at", "invalid_time"),
        (["reports", 0, "end"], "2025-12-31T23:59:00.000Z", "reports[0].end", "invalid_interval"),
        (["reports", 0, "monotonic_s"], 61.0, "reports[0].monotonic_s", "invalid_interval"),
        (["reports", 0, "util_max_pct"], 101, "reports[0].util_max_pct", "invalid_value"),
        (["reports", 0, "energy_mj"], -1, "reports[0].energy_mj", "invalid_value"),
        (["reports", 0, "healthy"], 1, "reports[0].healthy", "invalid_type"),
        (["reports", 0, "xid_errors"], ["79"], "reports[0].xid_errors", "invalid_type"),
        (["reports", 0, "samples"], 0, "reports[0].samples", "invalid_value"),
    ],
)
def test_a_malformed_envelope_is_refused_with_the_field_named(path, value, field, code):
    with pytest.raises(ProtocolError) as err:
        parse_envelope(mutate(body(), path, value))
    assert (err.value.field, err.value.code) == (field, code)


def test_bodies_that_are_not_canonical_are_refused():
    raw = body()
    spaced = json.dumps(json.loads(raw), indent=1).encode()
    with pytest.raises(ProtocolError) as err:
        parse_envelope(spaced)
    assert err.value.code == "not_canonical"
    # Duplicate keys: a parser keeping the first and one keeping the last would disagree.
    dup = raw[:-1] + b',"seq":2}'
    with pytest.raises(ProtocolError):
        parse_envelope(dup)


def test_garbage_is_refused_as_invalid_json():
    with pytest.raises(ProtocolError) as err:
        parse_envelope(b"\xff\xfe not json")
    assert (err.value.field, err.value.code) == ("body", "invalid_json")


reports_strategy = st.builds(
    lambda uuid, secs, util, energy, xids, present: report(
        gpu_uuid=uuid,
        end=T0 + timedelta(milliseconds=secs),
        monotonic_s=secs / 1000,
        util_mean_pct=util,
        util_max_pct=util,
        energy_mj=energy,
        xid_errors=tuple(xids),
        present=present,
        healthy=present,
    ),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40),
    st.integers(1, 3_600_000),
    st.none() | st.floats(0, 100, allow_nan=False).map(lambda x: round(x, 2)),
    st.none() | st.integers(0, 10**12),
    st.lists(st.integers(0, 200), max_size=3),
    st.booleans(),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(reports_strategy, max_size=8), st.integers(1, 10**9))
def test_any_envelope_the_agent_can_build_parses_back_to_the_same_reports(reports, seq):
    prev = GENESIS_HASH if seq == 1 else "a" * 64
    env = parse_envelope(body(seq=seq, prev=prev, reports=tuple(reports)))
    assert env.reports == tuple(reports)


def test_a_problem_from_a_proxy_is_read_leniently():
    problem = parse_problem(502, b"<html>Bad gateway</html>")
    assert problem.code == "http_502" and "Bad gateway" in problem.detail
    error = {"field": "gpus[0].uuid", "code": "not_declared", "message": "GPU-x is not declared"}
    answer = {"code": "gpu_mismatch", "title": "Mismatch", "status": 422, "acked_seq": 4, "errors": [error]}
    parsed = parse_problem(422, json.dumps(answer).encode())
    assert parsed.acked_seq == 4
    assert "gpus[0].uuid: GPU-x is not declared" in parsed.describe()


# ---------------------------------------------------------------------------------------------------
# The fast path of parse_envelope against its definition, parse_envelope_reference
#
# The fast path may decline any body (the reference then decides), but whatever it accepts must be
# accepted by the reference with the same Envelope, down to float signs and int-vs-float types
# (compared through repr) and the hash.


def reference_outcome(raw: bytes) -> str:
    """What the reference makes of a body: the envelope's repr and hash, or the refusal."""
    try:
        env = parse_envelope_reference(raw)
    except ProtocolError as exc:
        return f"refused {exc.code} {exc.field}: {exc.message}"
    return f"{env!r} {env.hash}"


def check_fast_path_agrees(raw: bytes) -> bool:
    """The fast path accepts only what the reference accepts, equally; True if it accepted."""
    fast = _parse_envelope_fast(raw)
    if fast is not None:
        assert f"{fast!r} {fast.hash}" == reference_outcome(raw)
    # And parse_envelope (fast, else reference) always answers as the reference does.
    try:
        env = parse_envelope(raw)
        answer = f"{env!r} {env.hash}"
    except ProtocolError as exc:
        answer = f"refused {exc.code} {exc.field}: {exc.message}"
    assert answer == reference_outcome(raw)
    return fast is not None


plain_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"], exclude_characters='"\\'),
    min_size=1,
    max_size=30,
)
any_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=30)
any_float = st.floats(allow_nan=False, allow_infinity=False)
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


@st.composite
def agent_reports(draw: st.DrawFn, uuids: st.SearchStrategy[str]) -> IntervalReport:
    start = draw(moments).replace(microsecond=draw(st.integers(0, 999)) * 1000)
    length_ms = draw(st.integers(1, 3_600_000))
    optional_int = st.none() | st.integers(0, 10**17)
    percent = st.none() | st.floats(0, 100) | st.integers(0, 100).map(float)
    return IntervalReport(
        gpu_uuid=draw(uuids),
        start=start,
        end=start + timedelta(milliseconds=length_ms),
        monotonic_s=length_ms / 1000,
        present=draw(st.booleans()),
        healthy=draw(st.booleans()),
        util_mean_pct=draw(percent),
        util_max_pct=draw(percent),
        mem_used_max_bytes=draw(optional_int),
        energy_mj=draw(optional_int),
        power_mean_mw=draw(optional_int),
        xid_errors=tuple(draw(st.lists(st.integers(0, 10**6), max_size=4))),
        ecc_uncorrected_delta=draw(optional_int),
        processes_max=draw(optional_int),
        samples=draw(st.integers(1, 10**6)),
        energy_resets=draw(st.integers(0, 5)),
        clock_step_s=draw(any_float | st.just(0.0)),
    )


@st.composite
def agent_bodies(draw: st.DrawFn, text: st.SearchStrategy[str]) -> bytes:
    seq = draw(st.integers(1, 10**17))
    return envelope_body(
        host_id=draw(st.from_regex(r"\A[A-Za-z0-9._:-]{1,128}\Z")),
        seq=seq,
        prev_hash=GENESIS_HASH if seq == 1 else draw(st.from_regex(r"\A[0-9a-f]{64}\Z")),
        agent_version=draw(text.filter(lambda s: len(s) <= 64)),
        created_at=draw(moments).replace(microsecond=draw(st.integers(0, 999)) * 1000),
        reports=draw(st.lists(agent_reports(text), max_size=6)),
    )


@settings(max_examples=150, deadline=None)
@given(agent_bodies(plain_text))
def test_the_fast_path_reads_every_body_an_agent_sends_as_the_reference_does(raw: bytes):
    # Plain strings (no character JSON escapes): the fast path must not decline any of these.
    assert check_fast_path_agrees(raw)


@settings(max_examples=100, deadline=None)
@given(agent_bodies(any_text))
def test_bodies_with_escaped_strings_parse_the_same_whichever_path_reads_them(raw: bytes):
    check_fast_path_agrees(raw)


json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 60, 100, 101, 3600, 3601, 10**17, 10**18, 10**19]),
    any_float,
    st.sampled_from(
        [0.0, -0.0, 1e-05, 1e16, 1e17, 100.0, 100.00000000000001, 60.001, 60.002, 60.003, 3600.0]
    ),
    any_text,
    st.sampled_from(
        [
            "2026-01-01T00:00:00.000Z",
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.000+00:00",
            "2026-01-01T00:00:00.000+01:00",
            "2026-01-01T00:01:00.000Z",
            "2026-13-01T00:00:00.000Z",
            "2025-12-31T23:59:00.000Z",
            "2026-01-01T00:00:00.000",
            "a" * 64,
            "0" * 64,
            "GPU-1",
        ]
    ),
    st.lists(st.integers(-2, 300), max_size=3),
    st.lists(st.text(max_size=2), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
envelope_keys = ["format", "host_id", "seq", "prev_hash", "agent_version", "created_at", "reports", "extra"]
report_keys = [*report().to_json().keys(), "extra"]


@settings(max_examples=300, deadline=None)
@given(agent_bodies(plain_text), st.data())
def test_mutated_envelopes_get_the_same_verdict_and_error_from_both_paths(raw: bytes, data: st.DataObject):
    obj = json.loads(raw)
    target, keys = obj, envelope_keys
    if obj["reports"] and data.draw(st.booleans(), label="in a report"):
        target, keys = data.draw(st.sampled_from(obj["reports"]), label="report"), report_keys
    key = data.draw(st.sampled_from(keys), label="key")
    if data.draw(st.integers(0, 9), label="delete?") == 0:
        target.pop(key, None)
    else:
        target[key] = data.draw(json_values, label="value")
    try:
        mutated = canonical_json(obj)
    except ValueError:  # a value canonical_json cannot write (a lone surrogate)
        return
    event(f"mutated value: fast path {'accepted' if check_fast_path_agrees(mutated) else 'declined'}")
    # And the valid body with one byte changed, inserted or removed: not canonical, or another value.
    digits = [k for k, c in enumerate(raw) if 0x30 <= c <= 0x39]
    if digits and data.draw(st.booleans(), label="a digit?"):  # often still valid: a new value
        i, byte = data.draw(st.sampled_from(digits), label="at"), data.draw(st.sampled_from(b"0159"))
    else:
        i = data.draw(st.integers(0, len(raw)), label="at")
        byte = data.draw(st.sampled_from(b'0159aeE.,:+-" {}[]\\\xc3\x00nt'), label="byte")
    how = data.draw(st.sampled_from(["replace", "insert", "delete"]), label="how")
    if how == "replace":
        edited = raw[:i] + bytes([byte]) + raw[i + 1 :]
    elif how == "insert":
        edited = raw[:i] + bytes([byte]) + raw[i:]
    else:
        edited = raw[:i] + raw[i + 1 :]
    event(f"edited byte: fast path {'accepted' if check_fast_path_agrees(edited) else 'declined'}")


def test_the_fast_path_declines_what_only_the_reference_can_explain():
    raw = body()
    assert _parse_envelope_fast(raw) is not None
    for edited in (
        raw.replace(b'"seq":1', b'"seq": 1'),  # whitespace: not canonical
        raw.replace(b'"monotonic_s":60.0', b'"monotonic_s":60.00'),  # another float spelling
        raw.replace(b'"monotonic_s":60.0', b'"monotonic_s":6e1'),
        raw.replace(b'"gpu_uuid":"GPU-1"', b'"gpu_uuid":"GPU-\\u0031"'),  # an escape
        raw.replace(b'"util_max_pct":99.0', b'"util_max_pct":100.5'),  # out of range
        raw.replace(b'"clock_step_s":0.0', b'"clock_step_s":1e999'),  # not finite
        raw.replace(b'"gpu_uuid":"GPU-1"', b'"gpu_uuid":"\\ud800"'),  # a lone surrogate
        b"[" * 100_000,  # deeper than the JSON reader's recursion
    ):
        assert _parse_envelope_fast(edited) is None
        with pytest.raises(ProtocolError):
            parse_envelope(edited)
