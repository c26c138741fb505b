"""Independent sub-markets: connected components of bids and offers.

A bid touches an offer when the offer has one of the bid's models and its window overlaps the
bid's window for at least the bid's duration; bids of one XOR group touch each other. Components
share no capacity and no XOR group, so clearing them separately and concatenating the results is
exactly clearing the whole round. The test is deliberately coarse (no size or price test) so that
each bid's loser reason is decided inside its own component. Bids that touch no offer come last,
together in one part with no offers (they all lose with `no_offer`).
"""

from __future__ import annotations

import numpy as np

from .rounds import Round


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def components(rnd: Round) -> list[Round]:
    """Split a checked round into its independent sub-markets, in a canonical order."""
    n_o, n_b = len(rnd.offers), len(rnd.bids)
    parent = list(range(n_o + n_b))

    def union(a: int, b: int) -> None:
        ra, rb = _find(parent, a), _find(parent, b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    o_model = np.array([o.gpu_model for o in rnd.offers], dtype=object)
    o_start = np.array([o.start_slot for o in rnd.offers], dtype=np.int64)
    o_end = np.array([o.end_slot for o in rnd.offers], dtype=np.int64)
    by_model: dict[str, np.ndarray] = {}
    for m in set(o_model.tolist()):
        by_model[m] = np.flatnonzero(o_model == m)
    xor_first: dict[str, int] = {}
    for bi, b in enumerate(rnd.bids):
        node = n_o + bi
        if b.xor_group is not None:
            if b.xor_group in xor_first:
                union(node, xor_first[b.xor_group])
            else:
                xor_first[b.xor_group] = node
        for m in b.gpu_models:
            idx = by_model.get(m)
            if idx is None:
                continue
            lo = np.maximum(o_start[idx], b.earliest_start)
            hi = np.minimum(o_end[idx], b.latest_end)
            for oi in idx[hi - lo >= b.duration].tolist():
                union(node, oi)
    roots: dict[int, tuple[list[int], list[int]]] = {}
    for oi in range(n_o):
        roots.setdefault(_find(parent, oi), ([], []))[0].append(oi)
    for bi in range(n_b):
        roots.setdefault(_find(parent, n_o + bi), ([], []))[1].append(bi)
    parts: list[Round] = []
    lonely: list[int] = []
    for _, (os_, bs) in sorted(roots.items()):
        if not bs:
            continue  # offers nobody can use: nothing to clear
        if not os_:
            # bids no offer can serve all lose (no_offer) whatever the part: one part for all of
            # them, not one model to build per bid
            lonely.extend(bs)
            continue
        parts.append(
            Round(
                round=rnd.round,
                slot_minutes=rnd.slot_minutes,
                slots=rnd.slots,
                offers=tuple(rnd.offers[i] for i in os_),
                bids=tuple(rnd.bids[i] for i in bs),
            )
        )
    if lonely:
        parts.append(
            Round(
                round=rnd.round,
                slot_minutes=rnd.slot_minutes,
                slots=rnd.slots,
                offers=(),
                bids=tuple(rnd.bids[i] for i in sorted(lonely)),
            )
        )
    return parts
