"""Reading and checking gridx.round/v1 documents (design/round-format.md).

`parse_round` never raises for bad input: it returns every problem it finds, each with its JSON
path (`bids[17].min_gpus`), so the caller can answer `infeasible_input` with the full list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

ROUND_FORMAT = "gridx.round/v1"
RESULT_FORMAT = "gridx.result/v1"

# Upper limits on a round's numbers, far above any real market (the app caps prices at 100,000
# cents per GPU-hour and orders at 4,096 GPUs by default, and its horizon is 14 days of slots that
# divide an hour) but low enough that the engine's int64 arithmetic cannot overflow: a loser's
# price needed sums price x GPUs over its slots, at most 1e7 x 1e5 x 1e5 = 1e17 < 2**63. Without
# them a limit of 4e18 overflowed and the bid was reported below reserve, and a 1e30 count or a
# horizon of 1e12 slots ended in `error` instead of naming the field.
MAX_SLOTS = 100_000
MAX_SLOT_MINUTES = 1_440
MAX_GPUS = 100_000
MAX_CENTS_PER_GPU_HOUR = 10_000_000


@dataclass(frozen=True, slots=True)
class Offer:
    """`gpus` GPUs of one model in one cluster, idle over `[start_slot, end_slot)`, at a reserve."""

    id: str
    team: str
    cluster: str
    gpu_model: str
    gpus: int
    start_slot: int
    end_slot: int
    reserve: int  # cents per GPU-hour


@dataclass(frozen=True, slots=True)
class Bid:
    """A request for `min_gpus..gpus` GPUs for `duration` contiguous slots inside a window."""

    id: str
    team: str
    gpu_models: tuple[str, ...]  # sorted, without duplicates
    gpus: int
    min_gpus: int
    duration: int  # slots
    earliest_start: int
    latest_end: int
    colocate: bool
    limit: int  # cents per GPU-hour
    xor_group: str | None


@dataclass(frozen=True, slots=True)
class Round:
    """A checked round; offers and bids sorted by id (the canonical order)."""

    round: str
    slot_minutes: int
    slots: int
    offers: tuple[Offer, ...]
    bids: tuple[Bid, ...]


class _Checker:
    """Collects problems as `path: what is wrong` lines."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, path: str, what: str) -> None:
        self.problems.append(f"{path}: {what}")

    def key(self, obj: dict[str, Any], path: str, name: str) -> tuple[bool, Any]:
        if name not in obj:
            self.add(f"{path}.{name}" if path else name, "missing")
            return False, None
        return True, obj[name]

    def string(self, obj: dict[str, Any], path: str, name: str, *, nonempty: bool = True) -> str | None:
        ok, v = self.key(obj, path, name)
        if not ok:
            return None
        p = f"{path}.{name}" if path else name
        if not isinstance(v, str):
            self.add(p, f"must be a string, got {_type_name(v)}")
            return None
        if nonempty and not v:
            self.add(p, "must not be empty")
            return None
        return v

    def integer(
        self,
        obj: dict[str, Any],
        path: str,
        name: str,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        ok, v = self.key(obj, path, name)
        if not ok:
            return None
        p = f"{path}.{name}" if path else name
        # bool is an int subclass in Python; JSON true is not a count.
        if isinstance(v, bool) or not isinstance(v, int):
            self.add(p, f"must be an integer, got {_type_name(v)}")
            return None
        if minimum is not None and v < minimum:
            self.add(p, f"must be at least {minimum}, got {v}")
            return None
        if maximum is not None and v > maximum:
            self.add(p, f"must be at most {maximum:,}, got {v}")
            return None
        return v


def _type_name(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def parse_round(doc: object) -> tuple[Round | None, list[str]]:
    """Check a gridx.round/v1 document; return the canonical Round or every problem found."""
    c = _Checker()
    if not isinstance(doc, dict):
        return None, [f"(root): must be an object, got {_type_name(doc)}"]
    ok, fmt = c.key(doc, "", "format")
    if ok and fmt != ROUND_FORMAT:
        c.add("format", f"must be {ROUND_FORMAT!r}, got {fmt!r}")
    round_id = c.string(doc, "", "round")
    start = c.string(doc, "", "start")
    if start is not None:
        try:
            parsed = datetime.fromisoformat(start.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                c.add("start", "must carry a UTC offset (for example 2026-12-01T00:00:00Z)")
        except ValueError:
            c.add("start", f"must be an ISO 8601 timestamp, got {start!r}")
    slot_minutes = c.integer(doc, "", "slot_minutes", minimum=1, maximum=MAX_SLOT_MINUTES)
    slots = c.integer(doc, "", "slots", minimum=1, maximum=MAX_SLOTS)
    c.string(doc, "", "currency")

    offers: list[Offer] = []
    ok, raw_offers = c.key(doc, "", "offers")
    if ok and not isinstance(raw_offers, list):
        c.add("offers", f"must be an array, got {_type_name(raw_offers)}")
    elif ok:
        seen: dict[str, int] = {}
        for i, o in enumerate(raw_offers):
            offer = _offer(c, o, f"offers[{i}]", slots, seen, i)
            if offer is not None:
                offers.append(offer)

    bids: list[Bid] = []
    ok, raw_bids = c.key(doc, "", "bids")
    if ok and not isinstance(raw_bids, list):
        c.add("bids", f"must be an array, got {_type_name(raw_bids)}")
    elif ok:
        seen_b: dict[str, int] = {}
        for i, b in enumerate(raw_bids):
            bid = _bid(c, b, f"bids[{i}]", slots, seen_b, i)
            if bid is not None:
                bids.append(bid)

    if c.problems or round_id is None or slot_minutes is None or slots is None:
        return None, c.problems
    return (
        Round(
            round=round_id,
            slot_minutes=slot_minutes,
            slots=slots,
            offers=tuple(sorted(offers, key=lambda o: o.id)),
            bids=tuple(sorted(bids, key=lambda b: b.id)),
        ),
        [],
    )


def _window(
    c: _Checker, path: str, lo: int | None, lo_name: str, hi: int | None, hi_name: str, slots: int | None
) -> bool:
    good = lo is not None and hi is not None
    if hi is not None and slots is not None and hi > slots:
        c.add(f"{path}.{hi_name}", f"must be at most slots ({slots}), got {hi}")
        good = False
    if lo is not None and hi is not None and lo >= hi:
        c.add(f"{path}.{hi_name}", f"must be greater than {lo_name} ({lo}), got {hi}")
        good = False
    return good


def _offer(
    c: _Checker, o: object, path: str, slots: int | None, seen: dict[str, int], i: int
) -> Offer | None:
    if not isinstance(o, dict):
        c.add(path, f"must be an object, got {_type_name(o)}")
        return None
    before = len(c.problems)
    oid = c.string(o, path, "id")
    if oid is not None:
        if oid in seen:
            c.add(f"{path}.id", f"duplicate id {oid!r} (also offers[{seen[oid]}])")
        else:
            seen[oid] = i
    team = c.string(o, path, "team")
    cluster = c.string(o, path, "cluster")
    model = c.string(o, path, "gpu_model")
    gpus = c.integer(o, path, "gpus", minimum=1, maximum=MAX_GPUS)
    start = c.integer(o, path, "start_slot", minimum=0)
    end = c.integer(o, path, "end_slot", minimum=1)
    reserve = c.integer(o, path, "reserve_cents_per_gpu_hour", minimum=0, maximum=MAX_CENTS_PER_GPU_HOUR)
    _window(c, path, start, "start_slot", end, "end_slot", slots)
    if len(c.problems) > before:
        return None
    assert oid is not None
    assert team is not None
    assert cluster is not None
    assert model is not None
    assert gpus is not None
    assert start is not None
    assert end is not None
    assert reserve is not None
    return Offer(oid, team, cluster, model, gpus, start, end, reserve)


def _bid(c: _Checker, b: object, path: str, slots: int | None, seen: dict[str, int], i: int) -> Bid | None:
    if not isinstance(b, dict):
        c.add(path, f"must be an object, got {_type_name(b)}")
        return None
    before = len(c.problems)
    bid_id = c.string(b, path, "id")
    if bid_id is not None:
        if bid_id in seen:
            c.add(f"{path}.id", f"duplicate id {bid_id!r} (also bids[{seen[bid_id]}])")
        else:
            seen[bid_id] = i
    team = c.string(b, path, "team")
    models: list[str] = []
    ok, raw_models = c.key(b, path, "gpu_models")
    if ok:
        if not isinstance(raw_models, list):
            c.add(f"{path}.gpu_models", f"must be an array of strings, got {_type_name(raw_models)}")
        elif not raw_models:
            c.add(f"{path}.gpu_models", "must name at least one GPU model")
        else:
            for j, m in enumerate(raw_models):
                if not isinstance(m, str) or not m:
                    c.add(f"{path}.gpu_models[{j}]", f"must be a non-empty string, got {_type_name(m)}")
                else:
                    models.append(m)
    gpus = c.integer(b, path, "gpus", minimum=1, maximum=MAX_GPUS)
    min_gpus = c.integer(b, path, "min_gpus", minimum=1, maximum=MAX_GPUS)
    if gpus is not None and min_gpus is not None and min_gpus > gpus:
        c.add(f"{path}.min_gpus", f"must be at most gpus ({gpus}), got {min_gpus}")
    duration = c.integer(b, path, "duration_slots", minimum=1)
    es = c.integer(b, path, "earliest_start_slot", minimum=0)
    le = c.integer(b, path, "latest_end_slot", minimum=1)
    if _window(c, path, es, "earliest_start_slot", le, "latest_end_slot", slots) and duration is not None:
        assert es is not None
        assert le is not None
        if es + duration > le:
            c.add(
                f"{path}.duration_slots",
                f"{duration} slots do not fit in the window [{es}, {le})",
            )
    ok, colocate = c.key(b, path, "colocate")
    if ok and not isinstance(colocate, bool):
        c.add(f"{path}.colocate", f"must be a boolean, got {_type_name(colocate)}")
    limit = c.integer(b, path, "limit_cents_per_gpu_hour", minimum=0, maximum=MAX_CENTS_PER_GPU_HOUR)
    xor = b.get("xor_group")
    if xor is not None and (not isinstance(xor, str) or not xor):
        c.add(f"{path}.xor_group", f"must be a non-empty string or null, got {_type_name(xor)}")
    if len(c.problems) > before:
        return None
    assert bid_id is not None
    assert team is not None
    assert gpus is not None
    assert min_gpus is not None
    assert duration is not None
    assert es is not None
    assert le is not None
    assert limit is not None
    return Bid(
        id=bid_id,
        team=team,
        gpu_models=tuple(sorted(set(models))),
        gpus=gpus,
        min_gpus=min_gpus,
        duration=duration,
        earliest_start=es,
        latest_end=le,
        colocate=bool(colocate),
        limit=limit,
        xor_group=xor if isinstance(xor, str) else None,
    )
