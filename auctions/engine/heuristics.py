"""Greedy primal heuristics: fast, deterministic, always valid (rules 1-5 by construction)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import numpy as np

from .formulation import FloatArray, IntArray, Market, fill

T = TypeVar("T")


@dataclass(frozen=True)
class Allocation:
    """GPUs per source (`x`) and the chosen placement per bid (-1 when it loses)."""

    x: IntArray
    chosen: IntArray
    # (market, welfare) once computed: an allocation is never changed after it is made, and the
    # search asks an incumbent's welfare after every move (large-31: ~1,800 times)
    _welfare: list[tuple[Market, float]] = field(default_factory=list, init=False, repr=False, compare=False)

    def welfare(self, mk: Market) -> float:
        if self._welfare and self._welfare[0][0] is mk:
            return self._welfare[0][1]
        # a product and a sum, not `x @ k_value`: numpy hands the mixed int64-float64 product to
        # OpenBLAS, whose threads wait for a core while the search's helpers hold both (large-31's
        # 118k sources: 3.4 ms a call so, 75 us on an idle machine; 6.7 s of a 96 s search)
        w = float((self.x * mk.k_value).sum())
        self._welfare[:] = [(mk, w)]
        return w

    def __reduce__(self) -> tuple[type[Allocation], tuple[IntArray, IntArray]]:
        return (Allocation, (self.x, self.chosen))  # pickled without its market


def empty(mk: Market) -> Allocation:
    return Allocation(np.zeros(mk.n_sources, dtype=np.int64), np.full(mk.b_gpus.size, -1, dtype=np.int64))


# The direct gather is used while it touches fewer than this many times the elements of the
# sliding maximum's passes: per element it costs ~10-28 ns against ~1.6-6 ns (session 13,
# docs/engine.md *Heuristics first*).
DIRECT_RATIO = 0.1
DIRECT_MIN = 2_048


def window_max(usage: IntArray, o: IntArray, s: IntArray, d: int) -> IntArray:
    """`usage[o[i], s[i] : s[i] + d].max()` for every i. Directly, a gather of `len(o) x d`
    elements; for bids with long durations and many start times (wide windows: hundreds of
    sources of 50-200 slots) a sliding maximum over the few offer rows involved is far cheaper:
    doubling passes give the maximum over every window of the largest power of two `p <= d`,
    and two overlapping such windows cover `[t, t + d)`. Same integers either way."""
    n = o.size
    if n == 0 or d <= 0:
        return np.zeros(n, dtype=usage.dtype)
    # the sliding passes' work counted as if every source had an offer row of its own (at most):
    # counting the rows (`np.unique`) would cost more than the gather on the short bids of
    # large-31; and below DIRECT_MIN elements the passes' numpy calls cost more than they save
    slide_work = DIRECT_RATIO * usage.shape[1] * d.bit_length() * min(n, usage.shape[0])
    if n * d <= DIRECT_MIN or n * d <= slide_work:
        out: IntArray = usage[o[:, None], s[:, None] + np.arange(d)[None, :]].max(axis=1)
        return out
    rows = np.unique(o)
    m = usage[rows]
    p = 1
    while 2 * p <= d:
        m = np.maximum(m[:, :-p], m[:, p:])
        p *= 2
    if p < d:
        m = np.maximum(m[:, : m.shape[1] - (d - p)], m[:, d - p :])
    found: IntArray = m[np.searchsorted(rows, o), s]
    return found


def best_fit(
    mk: Market, b: int, usage: IntArray, adj: FloatArray | None = None
) -> tuple[int, IntArray, float]:
    """The bid's most valuable placement given `usage` (offers x slots): (placement, take, value)."""
    p0, p1 = int(mk.b_pstart[b]), int(mk.b_pstart[b + 1])
    if p0 == p1:
        return -1, np.zeros(0, dtype=np.int64), 0.0
    k0, k1 = int(mk.p_kstart[p0]), int(mk.p_kstart[p1])
    ks = np.arange(k0, k1)
    o = mk.k_offer[ks]
    s = mk.p_start[mk.k_place[ks]]
    d = int(mk.b_dur[b])
    used = window_max(usage, o, s, d)
    avail = np.minimum(mk.k_ub[ks], mk.o_gpus[o] - used)
    seg_id = mk.k_place[ks] - p0
    seg_start = mk.p_kstart[p0:p1] - k0
    n = p1 - p0
    take = fill(
        avail,
        mk.k_margin[ks],
        seg_start,
        seg_id,
        np.full(n, mk.b_gpus[b], dtype=np.int64),
        np.full(n, mk.b_min[b], dtype=np.int64),
    )
    got = np.bincount(seg_id, weights=take, minlength=n)
    val = np.bincount(seg_id, weights=take * mk.k_value[ks], minlength=n)
    ok = (got >= mk.b_min[b]) & (val > 1e-9)
    if not ok.any():
        return -1, np.zeros(0, dtype=np.int64), 0.0
    if adj is not None:
        # choose by value net of capacity prices (what the GPUs are worth to the bids after it)
        net = np.bincount(seg_id, weights=take * adj[ks], minlength=n)
        ok &= net > 1e-9
        if not ok.any():
            return -1, np.zeros(0, dtype=np.int64), 0.0
        val = np.where(ok, net, -np.inf)
    else:
        val = np.where(ok, val, -np.inf)
    best = int(np.argmax(val))  # first maximum: canonical tie-break
    p = p0 + best
    sel = seg_id == best
    return p, take * sel, float(val[best])


def greedy(
    mk: Market, order: IntArray, start: Allocation | None = None, adj: FloatArray | None = None
) -> Allocation:
    """Place bids one by one in `order`, each where its value is highest on what is left."""
    usage = np.zeros((mk.o_gpus.size, mk.rnd.slots + 1), dtype=np.int64)
    x = np.zeros(mk.n_sources, dtype=np.int64)
    chosen = np.full(mk.b_gpus.size, -1, dtype=np.int64)
    taken = np.zeros(mk.n_groups, dtype=bool)
    if start is not None:
        x = start.x.copy()
        chosen = start.chosen.copy()
        for b in np.flatnonzero(chosen >= 0):
            taken[mk.b_group[b]] = True
        _add_usage(mk, usage, np.flatnonzero(x), x)
    for b in order.tolist():
        if chosen[b] >= 0 or taken[mk.b_group[b]]:
            continue
        p, take, _ = best_fit(mk, b, usage, adj)
        if p < 0:
            continue
        k0 = int(mk.p_kstart[mk.b_pstart[b]])
        ks = np.flatnonzero(take) + k0
        x[ks] = take[ks - k0]
        _add_usage(mk, usage, ks, x)
        chosen[b] = p
        taken[mk.b_group[b]] = True
    return Allocation(x, chosen)


def _add_usage(mk: Market, usage: IntArray, ks: IntArray, x: IntArray | None = None) -> None:
    for k in ks.tolist():
        p = int(mk.k_place[k])
        g = int(x[k]) if x is not None else 0
        usage[mk.k_offer[k], mk.p_start[p] : mk.p_end[p]] += g


def orders(mk: Market, lp_score: FloatArray | None = None) -> list[IntArray]:
    """Bid orders to try: total limit value, best isolated welfare, welfare density, LP guidance."""
    nb = mk.b_gpus.size
    ids = np.arange(nb)
    best = np.zeros(nb)
    if mk.n_places:
        np.maximum.at(best, mk.p_bid, mk.p_best)
    total = mk.b_limit * mk.b_gpus * mk.b_dur.astype(float)
    density = best / np.maximum(mk.b_gpus * mk.b_dur, 1)
    out = [np.lexsort((ids, -total)), np.lexsort((ids, -best)), np.lexsort((ids, -density))]
    if lp_score is not None:
        out.append(np.lexsort((ids, -best, -np.round(lp_score, 6))))
    return out


def from_x(mk: Market, x: IntArray) -> Allocation:
    """An allocation from source values whose placements are known to be valid."""
    chosen = np.full(mk.b_gpus.size, -1, dtype=np.int64)
    ks = np.flatnonzero(x > 0)
    if ks.size:
        ps = mk.k_place[ks]
        chosen[mk.p_bid[ps]] = ps
    return Allocation(x.astype(np.int64), chosen)


def while_they_fit(passes: Iterable[Callable[[], T]], deadline: float | None) -> Iterator[T]:
    """Run `passes` in turn and yield their results; the first always runs, another only if a
    pass as long as the last one still ends by `deadline` (a `time.perf_counter()` value). On
    dense rounds with wide windows a greedy pass takes 0.2-0.5 s, and the nine of the floor and
    the search's start, run whatever the limit, made 2-5 s clearings overrun by seconds."""
    last = 0.0
    for i, run in enumerate(passes):
        t = time.perf_counter()
        if i and deadline is not None and t + last > deadline:
            return
        out = run()
        last = time.perf_counter() - t
        yield out


def greedy_orders(
    mk: Market, lp_score: FloatArray | None = None, deadline: float | None = None
) -> tuple[Allocation, IntArray]:
    """The best of the greedy orders (first best on ties) and its order, trying orders while
    they fit before `deadline` (`while_they_fit`)."""
    cands = orders(mk, lp_score)
    best, best_order = empty(mk), cands[0]
    runs = while_they_fit((partial(greedy, mk, order) for order in cands), deadline)
    for order, a in zip(cands, runs, strict=False):
        if a.welfare(mk) > best.welfare(mk) + 1e-6:
            best, best_order = a, order
    return best, best_order


def best_greedy(mk: Market, lp_score: FloatArray | None = None, deadline: float | None = None) -> Allocation:
    """The best of the greedy orders (first best on ties); see `greedy_orders` for `deadline`."""
    return greedy_orders(mk, lp_score, deadline)[0]


def priced_greedy(mk: Market, lam: FloatArray, score: FloatArray, scale: float) -> Allocation:
    """Greedy guided by capacity prices `lam` (offers x slots, cents per GPU per slot) scaled by
    `scale`: bids by priced value, each placed where its value net of prices is highest."""
    cum = np.zeros((lam.shape[0], lam.shape[1] + 1))
    np.cumsum(lam * scale, axis=1, out=cum[:, 1:])
    s = mk.p_start[mk.k_place]
    e = mk.p_end[mk.k_place]
    adj = mk.k_value - (cum[mk.k_offer, e] - cum[mk.k_offer, s])
    ids = np.arange(mk.b_gpus.size)
    return greedy(mk, np.lexsort((ids, -score)), adj=adj)


def order_search(
    mk: Market,
    *,
    moves: int,
    deadline: float | None,
    seed: int = 0,
    start: tuple[Allocation, IntArray] | None = None,
) -> Allocation:
    """Hill climbing over greedy orders: from the best of `orders`, move one bid to an earlier
    place in the order and keep the new order when greedy on it earns at least as much (equal
    moves too, to cross plateaus). Half of the moves take a bid that gets fewer GPUs than it asks
    for (a loser or a partial fill), the others any bid. At most `moves` greedy passes, fewer if
    `deadline` (a `time.perf_counter()` value) comes first; seeded, so deterministic when the
    moves run out first. Meant for bids with wide windows, where greedy puts each bid at its
    earliest best start and the order decides what fits (docs/engine.md, *Wide windows*).
    `start`: `greedy_orders`' result when the caller has it."""
    rng = np.random.default_rng(seed)
    best, best_order = start if start is not None else greedy_orders(mk)
    n = best_order.size
    servable = mk.b_pstart[1:] > mk.b_pstart[:-1]
    if n < 2:
        return best
    pos = np.empty(n, dtype=np.int64)

    def short_bids() -> IntArray:
        """Bids that get fewer GPUs than they ask for, not first in the order (to move earlier)."""
        pos[best_order] = np.arange(n)
        got = np.bincount(mk.p_bid[mk.k_place], weights=best.x, minlength=n)
        short = np.flatnonzero((got < mk.b_gpus) & servable)
        out: IntArray = short[pos[short] > 0]
        return out

    short = short_bids()
    for _ in range(moves):
        if deadline is not None and time.perf_counter() >= deadline:
            break
        if short.size and rng.random() < 0.5:
            i = int(pos[short[rng.integers(short.size)]])
        else:
            i = int(rng.integers(1, n))
        j = int(rng.integers(0, i))
        order = np.concatenate((best_order[:j], best_order[i : i + 1], best_order[j:i], best_order[i + 1 :]))
        cand = greedy(mk, order)
        if cand.welfare(mk) >= best.welfare(mk) - 1e-6:
            best, best_order = cand, order
            short = short_bids()
    return best
