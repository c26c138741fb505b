"""Typed shapes of what the API takes and returns. Money is integer cents; times are aware UTC.

Responses are parsed leniently: a field the server adds later is kept in `raw` and never breaks an
older client. Requests (`BidRequest`, `OfferRequest`) are what a bot builds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


def parse_time(value: str) -> dt.datetime:
    """An ISO 8601 time from the API (always with an offset) as an aware UTC datetime."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"the server sent a time without an offset: {value!r}")
    return parsed.astimezone(dt.UTC)


def format_time(value: dt.datetime) -> str:
    """A datetime as the API wants it; a naive one is refused, since its meaning is a guess."""
    if value.tzinfo is None:
        raise ValueError(f"{value!r} has no timezone: pass an aware UTC datetime")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _is_time(hint: Any) -> bool:
    if hint is dt.datetime:
        return True
    return isinstance(hint, types.UnionType) and dt.datetime in typing.get_args(hint)


def build(cls: type[T], data: Mapping[str, Any], **nested: Any) -> T:
    """A response dataclass from JSON: times parsed, unknown fields kept in `raw`."""
    hints = _hints(cls)
    values: dict[str, Any] = {"raw": dict(data)}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name == "raw":
            continue
        if f.name in nested:
            values[f.name] = nested[f.name]
        elif f.name in data:
            value = data[f.name]
            if value is not None and _is_time(hints[f.name]):
                value = parse_time(value)
            values[f.name] = value
    return cls(**values)


# --- Requests ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BidRequest:
    """A sealed bid: `gpus` of any one of `gpu_models` for `duration_hours` contiguous hours inside
    [earliest_start, latest_end), paying at most `limit_cents_per_gpu_hour`."""

    gpu_models: tuple[str, ...] | list[str]
    gpus: int
    duration_hours: int
    earliest_start: dt.datetime
    latest_end: dt.datetime
    limit_cents_per_gpu_hour: int
    min_gpus: int | None = None
    colocate: bool = True
    xor_group: str = ""

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "gpu_models": list(self.gpu_models),
            "gpus": self.gpus,
            "duration_hours": self.duration_hours,
            "earliest_start": format_time(self.earliest_start),
            "latest_end": format_time(self.latest_end),
            "colocate": self.colocate,
            "limit_cents_per_gpu_hour": self.limit_cents_per_gpu_hour,
            "xor_group": self.xor_group,
        }
        if self.min_gpus is not None:
            body["min_gpus"] = self.min_gpus
        return body

    @property
    def exposure_cents(self) -> int:
        """The most this bid can cost: limit x GPUs x hours (what a key's exposure cap counts)."""
        return self.limit_cents_per_gpu_hour * self.gpus * self.duration_hours


@dataclass(frozen=True)
class OfferRequest:
    """Idle GPUs of one model in one of your clusters, for [start, end), at a reserve price."""

    cluster: int
    gpu_model: str
    gpus: int
    start: dt.datetime
    end: dt.datetime
    reserve_cents_per_gpu_hour: int

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "gpu_model": self.gpu_model,
            "gpus": self.gpus,
            "start": format_time(self.start),
            "end": format_time(self.end),
            "reserve_cents_per_gpu_hour": self.reserve_cents_per_gpu_hour,
        }


# --- Responses -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuModel:
    name: str
    vendor: str = ""
    memory_gb: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Cluster:
    """A seller cluster's public face; `gpus` counts GPUs per model."""

    code: str
    region: str = ""
    interconnect: str = ""
    gpus: dict[str, int] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Round:
    """An auction round: bids placed before `cutoff_at` are cleared in it."""

    number: int
    status: str
    opened_at: dt.datetime | None = None
    cutoff_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    cleared_at: dt.datetime | None = None
    horizon_start: dt.datetime | None = None
    slot_minutes: int = 60
    slots: int = 0
    snapshot_sha256: str = ""
    merkle_root: str = ""
    report_sha256: str = ""
    report: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class PricePoint:
    """The price index: clearing prices of one model in one cluster over one slot (or day)."""

    gpu_model: str
    cluster: str
    bucket_start: dt.datetime
    mean_cents_per_gpu_hour: int
    min_cents_per_gpu_hour: int
    max_cents_per_gpu_hour: int
    points: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class BidOutcome:
    round: int
    outcome: str
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    lease: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Bid:
    """One of your bids. `outcomes`, `receipt_salt` and `inclusion_proof` come with `client.bid(id)`."""

    id: int
    status: str
    gpu_models: list[str]
    gpus: int
    min_gpus: int
    duration_hours: int
    earliest_start: dt.datetime
    latest_end: dt.datetime
    limit_cents_per_gpu_hour: int
    colocate: bool = True
    currency: str = "usd"
    xor_group: str = ""
    idempotency_key: str = ""
    replaces: int | None = None
    receipt: str = ""
    api_key: str | None = None
    created_at: dt.datetime | None = None
    cancelled_at: dt.datetime | None = None
    receipt_salt: str | None = None
    outcomes: list[BidOutcome] = field(default_factory=list)
    inclusion_proof: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Bid:
        outcomes = [build(BidOutcome, o) for o in data.get("outcomes") or []]
        return build(cls, data, outcomes=outcomes)

    @property
    def exposure_cents(self) -> int:
        return self.limit_cents_per_gpu_hour * self.gpus * self.duration_hours


@dataclass(frozen=True)
class PlacedBid:
    """A stored bid, the round that will clear it, and whether this answer was a replay."""

    bid: Bid
    round: int | None
    replayed: bool = False


@dataclass(frozen=True)
class PlacedBatch:
    """Bids stored together (all or none), in request order."""

    bids: list[Bid]
    round: int | None
    replayed: bool = False


@dataclass(frozen=True)
class Offer:
    id: int
    status: str
    cluster: int
    cluster_code: str
    gpu_model: str
    gpus: int
    start: dt.datetime
    end: dt.datetime
    reserve_cents_per_gpu_hour: int
    currency: str = "usd"
    idempotency_key: str = ""
    created_at: dt.datetime | None = None
    cancelled_at: dt.datetime | None = None
    round: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class LeaseGpu:
    uuid: str
    start: dt.datetime
    end: dt.datetime
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Lease:
    """GPUs won in a round: `gpus` of `gpu_model` in `cluster_code` over [start, end)."""

    id: int
    round: int
    bid: int | None
    gpu_model: str
    cluster_code: str
    gpus: int
    start: dt.datetime
    end: dt.datetime
    payment_cents: int
    cents_per_gpu_hour: float = 0.0
    currency: str = "usd"
    created_at: dt.datetime | None = None
    gpu_assignments: list[LeaseGpu] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Lease:
        gpus = [build(LeaseGpu, g) for g in data.get("gpu_assignments") or []]
        return build(cls, data, gpu_assignments=gpus)

    @property
    def gpu_hours(self) -> float:
        return self.gpus * (self.end - self.start).total_seconds() / 3600


@dataclass(frozen=True)
class Preview:
    """Would a bid have won in the last cleared round, and at what price (nothing is stored)."""

    round: int | None
    would_win: bool
    gpus: int = 0
    gpu_model: str | None = None
    cluster: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    payment_cents: int = 0
    cents_per_gpu_hour: int | None = None
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    status: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class ApiKeyInfo:
    """One of your team's keys (never its secret)."""

    id: int
    name: str
    prefix: str
    scopes: list[str] = field(default_factory=list)
    created_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None
    exposure_cap_cents: int | None = None
    killed_at: dt.datetime | None = None
    rate_limit_per_minute: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class KillResult:
    """The kill switch's answer: the key is revoked, `cancelled` bids are gone, `held` stand."""

    key: str
    revoked_at: dt.datetime
    cancelled: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class WebhookEndpoint:
    """An endpoint receiving signed events; `secret` is present only in the create answer."""

    id: int
    url: str
    events: list[str]
    active: bool = True
    description: str = ""
    created_at: dt.datetime | None = None
    disabled_at: dt.datetime | None = None
    secret: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class WebhookAttempt:
    number: int
    at: dt.datetime
    status_code: int | None = None
    response: str = ""
    error: str = ""
    duration_ms: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class WebhookDelivery:
    """One delivery of an event to an endpoint; `payload` and `attempt_log` come with the detail."""

    id: int
    endpoint: int
    event: str
    event_id: str
    status: str
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str = ""
    next_attempt_at: dt.datetime | None = None
    delivered_at: dt.datetime | None = None
    replay_of: int | None = None
    created_at: dt.datetime | None = None
    payload: str | None = None
    attempt_log: list[WebhookAttempt] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookDelivery:
        attempts = [build(WebhookAttempt, a) for a in data.get("attempt_log") or []]
        return build(cls, data, attempt_log=attempts)
