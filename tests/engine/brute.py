"""Brute-force optimum of a tiny round, for checking the engine (independent of its code)."""

from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Any

Option = tuple[Fraction, list[tuple[str, int, int, int]]]  # value, [(offer, start, end, gpus)]


def _options(doc: dict[str, Any], bid: dict[str, Any]) -> list[Option]:
    out: list[Option] = []
    d = bid["duration_slots"]
    hours = Fraction(d * doc["slot_minutes"], 60)
    for model in set(bid["gpu_models"]):
        for s in range(bid["earliest_start_slot"], bid["latest_end_slot"] - d + 1):
            cover = [
                o
                for o in doc["offers"]
                if o["gpu_model"] == model and o["start_slot"] <= s and s + d <= o["end_slot"]
            ]
            groups = (
                [[o for o in cover if o["cluster"] == c] for c in {o["cluster"] for o in cover}]
                if bid["colocate"]
                else [cover]
            )
            for group in groups:
                ranges = [range(0, min(o["gpus"], bid["gpus"]) + 1) for o in group]
                for gs in itertools.product(*ranges):
                    n = sum(gs)
                    if not bid["min_gpus"] <= n <= bid["gpus"]:
                        continue
                    value = sum(
                        (bid["limit_cents_per_gpu_hour"] - o["reserve_cents_per_gpu_hour"]) * g * hours
                        for o, g in zip(group, gs, strict=True)
                    )
                    if value > 0:
                        out.append(
                            (
                                Fraction(value),
                                [(o["id"], s, s + d, g) for o, g in zip(group, gs, strict=True) if g],
                            )
                        )
    out.sort(key=lambda opt: -opt[0])
    return out


def optimum(doc: dict[str, Any]) -> Fraction:
    """Best welfare over all valid allocations (exhaustive search with a simple bound)."""
    bids = doc["bids"]
    opts = [_options(doc, b) for b in bids]
    order = sorted(range(len(bids)), key=lambda i: -(opts[i][0][0] if opts[i] else 0))
    best_rest = [Fraction(0)] * (len(order) + 1)
    for j in range(len(order) - 1, -1, -1):
        i = order[j]
        best_rest[j] = best_rest[j + 1] + (opts[i][0][0] if opts[i] else 0)
    cap = {o["id"]: o["gpus"] for o in doc["offers"]}
    used: dict[tuple[str, int], int] = {}
    groups: set[str] = set()
    best = [Fraction(0)]

    def fits(srcs: list[tuple[str, int, int, int]]) -> bool:
        return all(used.get((oid, t), 0) + g <= cap[oid] for oid, s, e, g in srcs for t in range(s, e))

    def apply(srcs: list[tuple[str, int, int, int]], sign: int) -> None:
        for oid, s, e, g in srcs:
            for t in range(s, e):
                used[(oid, t)] = used.get((oid, t), 0) + sign * g

    def dfs(j: int, value: Fraction) -> None:
        if value > best[0]:
            best[0] = value
        if j == len(order) or value + best_rest[j] <= best[0]:
            return
        bid = bids[order[j]]
        group = bid.get("xor_group")
        if group is None or group not in groups:
            for v, srcs in opts[order[j]]:
                if value + v + best_rest[j + 1] <= best[0]:
                    break
                if fits(srcs):
                    apply(srcs, 1)
                    if group is not None:
                        groups.add(group)
                    dfs(j + 1, value + v)
                    if group is not None:
                        groups.discard(group)
                    apply(srcs, -1)
        dfs(j + 1, value)

    dfs(0, Fraction(0))
    return best[0]
