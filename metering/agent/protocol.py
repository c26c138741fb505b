"""The gridx.metering/v1 wire protocol, shared by the agent and the server.

Pure Python (stdlib + cryptography): the Django server imports this module to verify what agents
send, so nothing here may import Django or any other part of Gridx. docs/metering-agent.md is the
human-readable contract; this module is its executable form.

Why the body is signed as raw bytes: JSON has no canonical form in general, so signing a parsed
object invites parser differentials (duplicate keys, float spellings). The agent produces canonical
bytes once, stores exactly those bytes in its outbox, and the server verifies the bytes it received
before it parses them; `parse_envelope` also refuses bytes that are not in canonical form.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

FORMAT = "gridx.metering/v1"
GENESIS_HASH = "0" * 64
# A signing time further than this from the server's clock is refused (Stripe and our own webhooks
# use the same 300 s). Buffered envelopes are re-signed at send time, so only the signing time must
# be fresh; the interval times inside the body may be days old.
CLOCK_SKEW_TOLERANCE_S = 300
MAX_BODY_BYTES = 1_048_576
MAX_REPORTS_PER_ENVELOPE = 1024
# end - start must equal monotonic_s; both are rounded to the millisecond, so allow two of them.
INTERVAL_ROUNDING_TOLERANCE_S = 0.002
MAX_INTERVAL_S = 3600.0

ENROLL_PATH = "/api/v1/metering/enroll"
REPORTS_PATH = "/api/v1/metering/reports"
HEADER_HOST = "Gridx-Host"
HEADER_TIMESTAMP = "Gridx-Timestamp"
HEADER_SIGNATURE = "Gridx-Signature"
SIGNATURE_SCHEME = "ed25519"
PROBLEM_CONTENT_TYPE = "application/problem+json"

_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")
_ID = re.compile(r"\A[A-Za-z0-9._:-]{1,128}\Z")


# ---------------------------------------------------------------------------------------------------
# Errors


class ProtocolError(ValueError):
    """Something received does not follow the protocol; `code` is stable, `field` names the culprit."""

    def __init__(self, code: str, message: str, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.code = code
        self.field = field
        self.message = message


class SignatureError(ProtocolError):
    """The signature headers are missing, malformed, or do not verify for this body."""


class ClockSkewError(SignatureError):
    """The signing time is further than CLOCK_SKEW_TOLERANCE_S from the verifier's clock."""

    def __init__(self, timestamp: int, now: float) -> None:
        self.skew_s = timestamp - now
        super().__init__(
            "clock_skew",
            f"signing time {timestamp} is {self.skew_s:+.0f} s from the server clock "
            f"(tolerance {CLOCK_SKEW_TOLERANCE_S} s): check the host's NTP",
            HEADER_TIMESTAMP,
        )


# ---------------------------------------------------------------------------------------------------
# Encoding helpers


def canonical_json(obj: object) -> bytes:
    """Canonical bytes of a JSON value: sorted keys, no whitespace, UTF-8, no NaN/Infinity."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def envelope_hash(body: bytes) -> str:
    """Lower-case hex SHA-256 of an envelope's raw body bytes: what the next envelope's prev_hash holds."""
    return hashlib.sha256(body).hexdigest()


def format_time(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a Z, e.g. 2025-01-01T00:00:00.000Z."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: protocol times are UTC")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def time_from_unix_ms(ms: int) -> datetime:
    """UTC datetime of integer Unix milliseconds (the agent keeps wall times as integers)."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def parse_time(value: object, field_name: str) -> datetime:
    """Parse a protocol time; only UTC (Z or +00:00) is accepted."""
    if not isinstance(value, str):
        raise ProtocolError("invalid_type", "must be an ISO-8601 UTC time string", field_name)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ProtocolError("invalid_time", f"{value!r} is not an ISO-8601 time", field_name) from None
    if moment.tzinfo is None or moment.utcoffset() != timedelta(0):
        raise ProtocolError("invalid_time", f"{value!r} is not in UTC", field_name)
    return moment.astimezone(UTC)


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Standard base64 of the raw 32-byte Ed25519 public key, as sent at enrolment."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode("ascii")


def load_public_key(b64: str) -> Ed25519PublicKey:
    """Decode a public key sent at enrolment; ProtocolError if it is not 32 raw bytes in base64."""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("invalid_public_key", "is not valid base64", "public_key") from None
    if len(raw) != 32:
        raise ProtocolError("invalid_public_key", "must be a raw 32-byte Ed25519 key", "public_key")
    return Ed25519PublicKey.from_public_bytes(raw)


# ---------------------------------------------------------------------------------------------------
# Signing


def signed_message(timestamp: int, body: bytes) -> bytes:
    """The bytes that are signed: the decimal signing time, a dot, then the raw body."""
    return str(int(timestamp)).encode("ascii") + b"." + body


def sign(private_key: Ed25519PrivateKey, timestamp: int, body: bytes) -> str:
    """The Gridx-Signature header value for `body` signed at Unix time `timestamp`."""
    signature = private_key.sign(signed_message(timestamp, body))
    return f"{SIGNATURE_SCHEME}=" + base64.b64encode(signature).decode("ascii")


def signature_headers(
    private_key: Ed25519PrivateKey, host_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """All three headers the agent sends with a body (re-made at every send, the body never changes)."""
    return {
        HEADER_HOST: host_id,
        HEADER_TIMESTAMP: str(int(timestamp)),
        HEADER_SIGNATURE: sign(private_key, timestamp, body),
        "Content-Type": "application/json",
    }


@dataclass(frozen=True)
class SignedHeaders:
    """The signing headers of a request, parsed but not yet verified."""

    host_id: str
    timestamp: int
    signature: bytes


def parse_signed_headers(headers: Mapping[str, str]) -> SignedHeaders:
    """Read Gridx-Host/-Timestamp/-Signature (case-insensitive names); SignatureError if malformed."""
    lower = {k.lower(): v for k, v in headers.items()}
    host = lower.get(HEADER_HOST.lower(), "").strip()
    if not _ID.match(host):
        raise SignatureError("missing_header", "missing or malformed host id", HEADER_HOST)
    raw_ts = lower.get(HEADER_TIMESTAMP.lower(), "").strip()
    if not raw_ts.isdigit() or len(raw_ts) > 12:
        raise SignatureError("missing_header", "missing or malformed Unix seconds", HEADER_TIMESTAMP)
    raw_sig = lower.get(HEADER_SIGNATURE.lower(), "").strip()
    return SignedHeaders(host_id=host, timestamp=int(raw_ts), signature=_decode_signature(raw_sig))


def _decode_signature(header_value: str) -> bytes:
    scheme, sep, b64 = header_value.partition("=")
    if not sep or scheme != SIGNATURE_SCHEME:
        raise SignatureError("missing_header", "must be ed25519=<base64 signature>", HEADER_SIGNATURE)
    try:
        signature = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("bad_signature", "signature is not valid base64", HEADER_SIGNATURE) from None
    if len(signature) != 64:
        raise SignatureError("bad_signature", "an Ed25519 signature is 64 bytes", HEADER_SIGNATURE)
    return signature


def check_timestamp(timestamp: int, now: float) -> None:
    """ClockSkewError when the signing time is more than CLOCK_SKEW_TOLERANCE_S away from `now`."""
    if abs(timestamp - now) > CLOCK_SKEW_TOLERANCE_S:
        raise ClockSkewError(timestamp, now)


def verify(public_key: str | Ed25519PublicKey, timestamp: int, body: bytes, signature_header: str) -> None:
    """Check a signature over b"{timestamp}." + body; raises SignatureError("bad_signature") if wrong.

    The clock-skew check is separate (`check_timestamp`) so that a server can tell the agent which
    of the two failed; `verify_request` does both in the right order.
    """
    key = load_public_key(public_key) if isinstance(public_key, str) else public_key
    signature = _decode_signature(signature_header)
    _verify_raw(key, timestamp, body, signature)


def _verify_raw(key: Ed25519PublicKey, timestamp: int, body: bytes, signature: bytes) -> None:
    try:
        key.verify(signature, signed_message(timestamp, body))
    except InvalidSignature:
        raise SignatureError(
            "bad_signature", "signature does not match the body and signing time", HEADER_SIGNATURE
        ) from None


def verify_request(
    public_key: str | Ed25519PublicKey, headers: SignedHeaders, body: bytes, *, now: float
) -> None:
    """Verify a parsed request: signature first (so a forger learns nothing), then the signing time."""
    key = load_public_key(public_key) if isinstance(public_key, str) else public_key
    _verify_raw(key, headers.timestamp, body, headers.signature)
    check_timestamp(headers.timestamp, now)


# ---------------------------------------------------------------------------------------------------
# Interval reports and envelopes


@dataclass(frozen=True)
class IntervalReport:
    """What one GPU did during one half-open interval [start, end); end - start == monotonic_s."""

    gpu_uuid: str
    start: datetime
    end: datetime
    monotonic_s: float  # seconds elapsed per the host's monotonic clock: the truth for length
    present: bool  # the GPU answered at every sample of the interval
    healthy: bool  # present, never lost, and no XID outside the application-caused set
    util_mean_pct: float | None  # None: the GPU does not report utilisation
    util_max_pct: float | None
    mem_used_max_bytes: int | None
    energy_mj: int | None  # from the energy counter, reset-aware; None if unsupported
    power_mean_mw: int | None
    xid_errors: tuple[int, ...]
    ecc_uncorrected_delta: int | None
    processes_max: int | None  # most compute processes seen at one sample
    samples: int
    energy_resets: int = 0  # how many times the energy counter went backwards in this interval
    clock_step_s: float = 0.0  # wall-clock step seen since the previous interval (0: continuous)

    def to_json(self) -> dict[str, Any]:
        return {
            "gpu_uuid": self.gpu_uuid,
            "start": format_time(self.start),
            "end": format_time(self.end),
            "monotonic_s": self.monotonic_s,
            "present": self.present,
            "healthy": self.healthy,
            "util_mean_pct": self.util_mean_pct,
            "util_max_pct": self.util_max_pct,
            "mem_used_max_bytes": self.mem_used_max_bytes,
            "energy_mj": self.energy_mj,
            "power_mean_mw": self.power_mean_mw,
            "xid_errors": list(self.xid_errors),
            "ecc_uncorrected_delta": self.ecc_uncorrected_delta,
            "processes_max": self.processes_max,
            "samples": self.samples,
            "energy_resets": self.energy_resets,
            "clock_step_s": self.clock_step_s,
        }


@dataclass(frozen=True)
class Envelope:
    """A signed batch of interval reports: one link of a host's hash chain."""

    host_id: str
    seq: int
    prev_hash: str
    agent_version: str
    created_at: datetime
    reports: tuple[IntervalReport, ...]
    hash: str = field(default="", compare=False)  # envelope_hash of the body it was parsed from


def envelope_body(
    *,
    host_id: str,
    seq: int,
    prev_hash: str,
    agent_version: str,
    created_at: datetime,
    reports: tuple[IntervalReport, ...] | list[IntervalReport],
) -> bytes:
    """The canonical body bytes of an envelope; stored as is and never re-encoded."""
    body = canonical_json(
        {
            "format": FORMAT,
            "host_id": host_id,
            "seq": seq,
            "prev_hash": prev_hash,
            "agent_version": agent_version,
            "created_at": format_time(created_at),
            "reports": [r.to_json() for r in reports],
        }
    )
    # Parse what we built: an agent bug must fail here, on the host, not as a refusal days later.
    parse_envelope(body)
    return body


_ENVELOPE_KEYS = {"format", "host_id", "seq", "prev_hash", "agent_version", "created_at", "reports"}
_REPORT_KEYS = {
    "gpu_uuid",
    "start",
    "end",
    "monotonic_s",
    "present",
    "healthy",
    "util_mean_pct",
    "util_max_pct",
    "mem_used_max_bytes",
    "energy_mj",
    "power_mean_mw",
    "xid_errors",
    "ecc_uncorrected_delta",
    "processes_max",
    "samples",
    "energy_resets",
    "clock_step_s",
}


def parse_envelope(body: bytes) -> Envelope:
    """Parse and validate envelope bytes; ProtocolError naming the field for anything malformed.

    Validation is structural (types, ranges, canonical form). Whether the host, the GPUs and the
    chain are right is the server's business, because only it knows them.

    Two paths with one verdict: `_parse_envelope_fast` recognises the bodies agents send (canonical,
    valid, no string escapes) in a few microseconds a report, and anything it does not recognise
    goes to `parse_envelope_reference`, the field-by-field definition of the rules, which also
    names the field and code of every refusal. The fast path never refuses: it only ever accepts
    what the reference would accept, with an equal result (property-tested in
    tests/agent/test_protocol.py).
    """
    if len(body) <= MAX_BODY_BYTES:
        env = _parse_envelope_fast(body)
        if env is not None:
            return env
    return parse_envelope_reference(body)


def parse_envelope_reference(body: bytes) -> Envelope:
    """The definition of `parse_envelope`: JSON, then every rule one field at a time (slow, clear)."""
    if len(body) > MAX_BODY_BYTES:
        raise ProtocolError("too_large", f"body is larger than {MAX_BODY_BYTES} bytes", "body")
    try:
        obj = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        # ValueError: bad UTF-8, bad JSON, or an integer of more than 4300 digits; RecursionError:
        # deeply nested arrays. All are refusals, not server errors.
        raise ProtocolError("invalid_json", f"body is not UTF-8 JSON ({exc})", "body") from None
    if not isinstance(obj, dict):
        raise ProtocolError("invalid_type", "body must be a JSON object", "body")
    _check_keys(obj, _ENVELOPE_KEYS, "")
    if obj["format"] != FORMAT:
        raise ProtocolError("unsupported_format", f"expected {FORMAT!r}, got {obj['format']!r}", "format")
    # Refuse anything but canonical bytes: a body with duplicate keys or odd spellings could be read
    # differently by another JSON parser than by the one that checked it.
    try:
        canonical = canonical_json(obj)
    except ValueError:  # 1e999 reads as infinity, "\ud800" as a lone surrogate: neither can be written
        canonical = b""
    if canonical != body:
        raise ProtocolError(
            "not_canonical", "body is not canonical JSON (sorted keys, compact, UTF-8)", "body"
        )
    host_id = _str(obj, "host_id", "")
    if not _ID.match(host_id):
        raise ProtocolError("invalid_value", "must be 1-128 of A-Z a-z 0-9 . _ : -", "host_id")
    seq = _int(obj, "seq", "", minimum=1)
    prev_hash = _str(obj, "prev_hash", "")
    if not _HEX64.match(prev_hash):
        raise ProtocolError("invalid_value", "must be 64 lower-case hex digits", "prev_hash")
    if seq == 1 and prev_hash != GENESIS_HASH:
        raise ProtocolError("invalid_value", "must be 64 zeros for seq 1", "prev_hash")
    agent_version = _str(obj, "agent_version", "")
    if not 0 < len(agent_version) <= 64:
        raise ProtocolError("invalid_value", "must be 1-64 characters", "agent_version")
    created_at = parse_time(obj["created_at"], "created_at")
    raw_reports = obj["reports"]
    if not isinstance(raw_reports, list):
        raise ProtocolError("invalid_type", "must be a list", "reports")
    if len(raw_reports) > MAX_REPORTS_PER_ENVELOPE:
        raise ProtocolError("too_large", f"at most {MAX_REPORTS_PER_ENVELOPE} reports", "reports")
    reports = tuple(_parse_report(r, f"reports[{i}]") for i, r in enumerate(raw_reports))
    return Envelope(
        host_id=host_id,
        seq=seq,
        prev_hash=prev_hash,
        agent_version=agent_version,
        created_at=created_at,
        reports=reports,
        hash=envelope_hash(body),
    )


def _parse_report(raw: object, where: str) -> IntervalReport:
    if not isinstance(raw, dict):
        raise ProtocolError("invalid_type", "must be an object", where)
    _check_keys(raw, _REPORT_KEYS, where)
    uuid = _str(raw, "gpu_uuid", where)
    if not 0 < len(uuid) <= 96:
        raise ProtocolError("invalid_value", "must be 1-96 characters", f"{where}.gpu_uuid")
    start = parse_time(raw["start"], f"{where}.start")
    end = parse_time(raw["end"], f"{where}.end")
    if not start < end:
        raise ProtocolError(
            "invalid_interval", "end must be after start (half-open interval)", f"{where}.end"
        )
    monotonic_s = _num(raw, "monotonic_s", where, minimum=0.0)
    if not 0 < monotonic_s <= MAX_INTERVAL_S:
        raise ProtocolError("invalid_value", f"must be in (0, {MAX_INTERVAL_S}]", f"{where}.monotonic_s")
    if abs((end - start).total_seconds() - monotonic_s) > INTERVAL_ROUNDING_TOLERANCE_S:
        raise ProtocolError("invalid_interval", "end - start must equal monotonic_s", f"{where}.monotonic_s")
    util_mean = _opt_num(raw, "util_mean_pct", where, 0.0, 100.0)
    util_max = _opt_num(raw, "util_max_pct", where, 0.0, 100.0)
    xids = raw["xid_errors"]
    if not isinstance(xids, list) or not all(_is_int(x) and x >= 0 for x in xids):
        raise ProtocolError("invalid_type", "must be a list of non-negative integers", f"{where}.xid_errors")
    return IntervalReport(
        gpu_uuid=uuid,
        start=start,
        end=end,
        monotonic_s=monotonic_s,
        present=_bool(raw, "present", where),
        healthy=_bool(raw, "healthy", where),
        util_mean_pct=util_mean,
        util_max_pct=util_max,
        mem_used_max_bytes=_opt_int(raw, "mem_used_max_bytes", where),
        energy_mj=_opt_int(raw, "energy_mj", where),
        power_mean_mw=_opt_int(raw, "power_mean_mw", where),
        xid_errors=tuple(xids),
        ecc_uncorrected_delta=_opt_int(raw, "ecc_uncorrected_delta", where),
        processes_max=_opt_int(raw, "processes_max", where),
        samples=_int(raw, "samples", where, minimum=1),
        energy_resets=_int(raw, "energy_resets", where, minimum=0),
        clock_step_s=_num(raw, "clock_step_s", where),
    )


# ---------------------------------------------------------------------------------------------------
# The fast path of parse_envelope
#
# A canonical envelope has one spelling, so it can be recognised by a template: keys in sorted order,
# no whitespace, and each value in the only spelling json.dumps gives it. The regular expressions
# below match exactly those spellings for the bodies agents send; whatever they do not match (string
# escapes, other time spellings, huge integers, a malformed body) is left to the reference parser,
# so they may be stricter than the protocol but never looser. Character classes are ASCII on
# purpose: `\d` would also match other scripts' digits.

_F_STR = r'"([^"\\\x00-\x1f]*)"'  # a JSON string without escapes is its own canonical spelling
_F_TIME = r'"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z)"'  # format_time's form
_F_UINT = r"(0|[1-9][0-9]{0,17})"  # < 10**18: fits a bigint; larger ones go the slow way
_F_OPT_UINT = r"(null|0|[1-9][0-9]{0,17})"
# Any JSON number (≤ 40 characters); whether it is canonical (repr of the float, or str of the int)
# is checked by _fast_number.
_F_NUM = r"(-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,20})?(?:e[-+][0-9]{1,3})?)"
_F_OPT_NUM = r"(null|-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,20})?(?:e[-+][0-9]{1,3})?)"
_F_BOOL = r"(true|false)"
_F_XIDS = r"\[((?:0|[1-9][0-9]{0,17})(?:,(?:0|[1-9][0-9]{0,17}))*)?\]"

_F_REPORT_VALUES = {
    "clock_step_s": _F_NUM,
    "ecc_uncorrected_delta": _F_OPT_UINT,
    "end": _F_TIME,
    "energy_mj": _F_OPT_UINT,
    "energy_resets": _F_UINT,
    "gpu_uuid": r'"([^"\\\x00-\x1f]{1,96})"',
    "healthy": _F_BOOL,
    "mem_used_max_bytes": _F_OPT_UINT,
    "monotonic_s": _F_NUM,
    "power_mean_mw": _F_OPT_UINT,
    "present": _F_BOOL,
    "processes_max": _F_OPT_UINT,
    "samples": r"([1-9][0-9]{0,17})",
    "start": _F_TIME,
    "util_max_pct": _F_OPT_NUM,
    "util_mean_pct": _F_OPT_NUM,
    "xid_errors": _F_XIDS,
}
assert set(_F_REPORT_VALUES) == _REPORT_KEYS
# Keys in the order canonical_json writes them (sorted), so a match is also in canonical order.
_F_REPORT = re.compile(
    "\\{" + ",".join(f'"{k}":{_F_REPORT_VALUES[k]}' for k in sorted(_F_REPORT_VALUES)) + "\\}"
)
_F_HEAD = re.compile(
    f'\\{{"agent_version":"([^"\\\\\\x00-\\x1f]{{1,64}})","created_at":{_F_TIME},'
    f'"format":"{re.escape(FORMAT)}","host_id":"([A-Za-z0-9._:-]{{1,128}})",'
    '"prev_hash":"([0-9a-f]{64})","reports":\\['
)
_F_TAIL = re.compile(r'\],"seq":([1-9][0-9]{0,17})\}')
assert sorted(_ENVELOPE_KEYS) == [
    "agent_version",
    "created_at",
    "format",
    "host_id",
    "prev_hash",
    "reports",
    "seq",
]

_REPORT_FIELD_NAMES = tuple(f.name for f in fields(IntervalReport))
assert set(_REPORT_FIELD_NAMES) == _REPORT_KEYS

# Canonical number spellings seen before, with their value (a handful recur: 60.0, 0.0, 100.0).
_number_cache: dict[str, float] = {}


def _fast_number(token: str) -> float | None:
    """The float value of a number token if it is canonical (json.dumps would write it so), else None."""
    value = _number_cache.get(token)
    if value is not None:
        return value
    number = float(token)  # the regex admits only spellings float() reads
    if "." in token or "e" in token:
        # json.dumps writes floats with float.__repr__; infinity (1e999) has no JSON spelling.
        if repr(number) != token:
            return None
    elif str(int(token)) != token:  # "-0" reads as 0, written "0"
        return None
    if len(_number_cache) < 4096:
        _number_cache[token] = number
    return number


def _parse_envelope_fast(body: bytes) -> Envelope | None:
    """The envelope if `body` is a canonical, valid envelope without string escapes, else None.

    None means "not recognised", not "invalid": the caller then asks the reference parser. Every
    check of parse_envelope_reference is here, in the same arithmetic, so that a body accepted here
    would be accepted there with an equal Envelope.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    head = _F_HEAD.match(text)
    if head is None:
        return None
    agent_version, created_text, host_id, prev_hash = head.groups()
    times: dict[str, datetime] = {}  # an envelope's reports share a few start/end times
    try:
        created_at = times[created_text] = datetime.fromisoformat(created_text)
    except ValueError:  # e.g. month 13: the reference names the field
        return None
    reports: list[IntervalReport] = []
    append = reports.append
    match_report = _F_REPORT.match
    number = _fast_number
    new, set_attr, names = object.__new__, object.__setattr__, _REPORT_FIELD_NAMES
    pos = head.end()
    if text.startswith("]", pos):
        pass
    else:
        while True:
            m = match_report(text, pos)
            if m is None:
                return None
            (
                clock_step,
                ecc,
                end_text,
                energy,
                resets,
                uuid,
                healthy,
                mem,
                mono_text,
                power,
                present,
                processes,
                samples,
                start_text,
                util_max_text,
                util_mean_text,
                xids,
            ) = m.groups()
            start = times.get(start_text)
            end = times.get(end_text)
            try:
                if start is None:
                    start = times[start_text] = datetime.fromisoformat(start_text)
                if end is None:
                    end = times[end_text] = datetime.fromisoformat(end_text)
            except ValueError:
                return None
            if not start < end:
                return None
            monotonic_s = number(mono_text)
            if monotonic_s is None or not 0 < monotonic_s <= MAX_INTERVAL_S:
                return None
            if abs((end - start).total_seconds() - monotonic_s) > INTERVAL_ROUNDING_TOLERANCE_S:
                return None
            if util_mean_text == "null":
                util_mean = None
            else:
                util_mean = number(util_mean_text)
                if util_mean is None or not 0.0 <= util_mean <= 100.0:
                    return None
            if util_max_text == "null":
                util_max = None
            else:
                util_max = number(util_max_text)
                if util_max is None or not 0.0 <= util_max <= 100.0:
                    return None
            clock_step_s = number(clock_step)
            if clock_step_s is None:
                return None
            # A frozen dataclass's __init__ sets its 17 fields one object.__setattr__ at a time
            # (~2.5 us); setting the instance dict at once gives the same object in half the time.
            report = new(IntervalReport)
            set_attr(
                report,
                "__dict__",
                dict(
                    zip(
                        names,
                        (
                            uuid,
                            start,
                            end,
                            monotonic_s,
                            present == "true",
                            healthy == "true",
                            util_mean,
                            util_max,
                            None if mem == "null" else int(mem),
                            None if energy == "null" else int(energy),
                            None if power == "null" else int(power),
                            tuple(map(int, xids.split(","))) if xids else (),
                            None if ecc == "null" else int(ecc),
                            None if processes == "null" else int(processes),
                            int(samples),
                            int(resets),
                            clock_step_s,
                        ),
                        strict=True,
                    )
                ),
            )
            append(report)
            pos = m.end()
            if text.startswith(",", pos):
                pos += 1
                continue
            break
    if len(reports) > MAX_REPORTS_PER_ENVELOPE:
        return None
    tail = _F_TAIL.fullmatch(text, pos)
    if tail is None:
        return None
    seq = int(tail.group(1))
    if seq == 1 and prev_hash != GENESIS_HASH:
        return None
    return Envelope(
        host_id=host_id,
        seq=seq,
        prev_hash=prev_hash,
        agent_version=agent_version,
        created_at=created_at,
        reports=tuple(reports),
        hash=envelope_hash(body),
    )


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _check_keys(obj: dict[str, Any], expected: set[str], where: str) -> None:
    missing = sorted(expected - obj.keys())
    if missing:
        raise ProtocolError("required", "is required", _path(where, missing[0]))
    unknown = sorted(obj.keys() - expected)
    if unknown:
        raise ProtocolError("unknown_field", f"is not part of {FORMAT}", _path(where, unknown[0]))


def _is_int(value: object) -> bool:
    # bool is a subclass of int in Python; JSON true is not a number.
    return isinstance(value, int) and not isinstance(value, bool)


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise ProtocolError("invalid_type", "must be a string", _path(where, key))
    return value


def _bool(obj: dict[str, Any], key: str, where: str) -> bool:
    value = obj[key]
    if not isinstance(value, bool):
        raise ProtocolError("invalid_type", "must be true or false", _path(where, key))
    return value


def _int(obj: dict[str, Any], key: str, where: str, minimum: int | None = None) -> int:
    value = obj[key]
    if not _is_int(value):
        raise ProtocolError("invalid_type", "must be an integer", _path(where, key))
    if minimum is not None and value < minimum:
        raise ProtocolError("invalid_value", f"must be at least {minimum}", _path(where, key))
    return int(value)


def _opt_int(obj: dict[str, Any], key: str, where: str) -> int | None:
    if obj[key] is None:
        return None
    return _int(obj, key, where, minimum=0)


def _num(obj: dict[str, Any], key: str, where: str, minimum: float | None = None) -> float:
    value = obj[key]
    if not (_is_int(value) or isinstance(value, float)) or not math.isfinite(value):
        raise ProtocolError("invalid_type", "must be a number", _path(where, key))
    if minimum is not None and value < minimum:
        raise ProtocolError("invalid_value", f"must be at least {minimum}", _path(where, key))
    return float(value)


def _opt_num(obj: dict[str, Any], key: str, where: str, low: float, high: float) -> float | None:
    if obj[key] is None:
        return None
    value = _num(obj, key, where)
    if not low <= value <= high:
        raise ProtocolError("invalid_value", f"must be between {low} and {high}", _path(where, key))
    return value


# ---------------------------------------------------------------------------------------------------
# Enrolment


@dataclass(frozen=True)
class GpuInfo:
    """A GPU as the agent found it at enrolment; the server matches it against declared inventory."""

    uuid: str
    name: str
    memory_bytes: int
    serial: str | None  # only boards with an inforom have one
    pci_bus_id: str
    driver_version: str

    def to_json(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "name": self.name,
            "memory_bytes": self.memory_bytes,
            "serial": self.serial,
            "pci_bus_id": self.pci_bus_id,
            "driver_version": self.driver_version,
        }


@dataclass(frozen=True)
class EnrollRequest:
    """Body of POST /api/v1/metering/enroll."""

    token: str
    public_key: str  # base64 of the raw 32-byte Ed25519 public key
    hostname: str
    agent_version: str
    gpus: tuple[GpuInfo, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "public_key": self.public_key,
            "hostname": self.hostname,
            "agent_version": self.agent_version,
            "gpus": [g.to_json() for g in self.gpus],
        }


_ENROLL_KEYS = {"token", "public_key", "hostname", "agent_version", "gpus"}
_GPU_KEYS = {"uuid", "name", "memory_bytes", "serial", "pci_bus_id", "driver_version"}


def parse_enroll_request(body: bytes) -> EnrollRequest:
    """Parse and validate an enrolment request; ProtocolError naming the field otherwise."""
    try:
        obj = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        # ValueError: bad UTF-8, bad JSON, or an integer of more than 4300 digits; RecursionError:
        # deeply nested arrays. All are refusals, not server errors.
        raise ProtocolError("invalid_json", f"body is not UTF-8 JSON ({exc})", "body") from None
    if not isinstance(obj, dict):
        raise ProtocolError("invalid_type", "body must be a JSON object", "body")
    _check_keys(obj, _ENROLL_KEYS, "")
    token = _str(obj, "token", "")
    if not token:
        raise ProtocolError("required", "is required", "token")
    public_key = _str(obj, "public_key", "")
    load_public_key(public_key)
    raw_gpus = obj["gpus"]
    if not isinstance(raw_gpus, list) or not raw_gpus:
        raise ProtocolError("invalid_value", "must be a non-empty list", "gpus")
    gpus = []
    for i, raw in enumerate(raw_gpus):
        where = f"gpus[{i}]"
        if not isinstance(raw, dict):
            raise ProtocolError("invalid_type", "must be an object", where)
        _check_keys(raw, _GPU_KEYS, where)
        serial = raw["serial"]
        if serial is not None and not isinstance(serial, str):
            raise ProtocolError("invalid_type", "must be a string or null", f"{where}.serial")
        gpus.append(
            GpuInfo(
                uuid=_str(raw, "uuid", where),
                name=_str(raw, "name", where),
                memory_bytes=_int(raw, "memory_bytes", where, minimum=0),
                serial=serial,
                pci_bus_id=_str(raw, "pci_bus_id", where),
                driver_version=_str(raw, "driver_version", where),
            )
        )
    return EnrollRequest(
        token=token,
        public_key=public_key,
        hostname=_str(obj, "hostname", ""),
        agent_version=_str(obj, "agent_version", ""),
        gpus=tuple(gpus),
    )


# ---------------------------------------------------------------------------------------------------
# Errors on the wire (RFC 9457 problem details)


@dataclass(frozen=True)
class FieldError:
    field: str
    code: str
    message: str


@dataclass(frozen=True)
class Problem:
    """An application/problem+json error answer; `acked_seq` is set when the server still acks."""

    status: int
    code: str
    title: str
    detail: str = ""
    errors: tuple[FieldError, ...] = ()
    acked_seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": f"https://gridx.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
            "errors": [{"field": e.field, "code": e.code, "message": e.message} for e in self.errors],
        }
        if self.acked_seq is not None:
            out["acked_seq"] = self.acked_seq
        return out

    def describe(self) -> str:
        """One readable paragraph for a terminal or a log line."""
        text = f"{self.title} ({self.code}, HTTP {self.status})"
        if self.detail:
            text += f": {self.detail}"
        for e in self.errors:
            text += f"\n  - {e.field}: {e.message}" if e.field else f"\n  - {e.message}"
        return text


def parse_problem(status: int, body: bytes) -> Problem:
    """Read an error answer leniently: any server, proxy or load balancer may have produced it."""
    try:
        obj = json.loads(body.decode("utf-8")) if body else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        obj = {}
    if not isinstance(obj, dict):
        obj = {}
    errors = []
    for e in obj.get("errors") or []:
        if isinstance(e, dict):
            errors.append(
                FieldError(str(e.get("field", "")), str(e.get("code", "")), str(e.get("message", "")))
            )
    acked = obj.get("acked_seq")
    snippet = body[:200].decode("utf-8", "replace").strip() if body and not obj else ""
    return Problem(
        status=status,
        code=str(obj.get("code") or f"http_{status}"),
        title=str(obj.get("title") or f"HTTP {status}"),
        detail=str(obj.get("detail") or snippet),
        errors=tuple(errors),
        acked_seq=acked if _is_int(acked) else None,
    )
