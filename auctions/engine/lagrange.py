"""A Lagrangian bound for sub-markets too large for the LP relaxation (xlarge-41: 2M columns).

Price every (offer, slot) at lam >= 0 cents per GPU per slot and drop the capacity rows. What is
left splits into one problem per XOR group (choose at most one placement of one bid, and GPUs per
source between min_gpus and gpus), solved exactly by sorting sources by their priced value. For any
lam >= 0,

    L(lam) = sum_{o,t} lam[o,t] * gpus_o + sum_groups max(0, best priced placement value)

is an upper bound on the welfare of every valid clearing (weak duality). Subgradient steps
(Polyak's rule, aimed at the best known welfare) lower it; the best L seen is the bound we report,
and its lam are capacity prices in the sense of convex-hull pricing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .formulation import FloatArray, IntArray, Market, fill


@dataclass(frozen=True)
class LagrangeResult:
    bound: float
    lam: FloatArray  # (offers, slots), cents per GPU per slot
    score: FloatArray  # per bid: its best priced placement value at the best lam
    iterations: int
    seconds: float


def _by_place_then_value(place: IntArray, a: FloatArray) -> IntArray:
    """`np.lexsort((-a, place))` (by placement, then priced value, highest first, then index),
    exactly, in a fraction of the time when `place` is sorted, as a Market's sources are.

    One stable sort of `place + (a scaled into [0, 0.5], highest first)`: the keys are nearly sorted
    already, so the sort is cheap (xlarge-41, 1.5M sources: ~20 ms against ~250 ms for lexsort,
    which re-sorts by both keys). Values closer than the scaled key resolves (sums of prices that
    are equal but rounded differently, ~1e-9 apart) can come out in index order instead of value
    order: the placements where that happened are checked for and re-sorted by lexsort."""
    if not a.size:
        return np.zeros(0, dtype=np.int64)
    lo, hi = float(a.min()), float(a.max())
    span = hi - lo
    if not (span > 0.0 and np.isfinite(span)):
        return np.lexsort((-a, place))
    order = np.argsort(place + (hi - a) * (0.5 / span), kind="stable")
    a_s = a[order]
    p_s = place[order]
    da = a_s[1:] - a_s[:-1]
    bad = (p_s[1:] == p_s[:-1]) & ((da > 0) | ((da == 0) & (order[1:] < order[:-1])))
    if bad.any():
        redo = np.zeros(int(p_s[-1]) + 1, dtype=bool)
        redo[p_s[1:][bad]] = True
        pos = np.flatnonzero(redo[p_s])
        sub = order[pos]
        order[pos] = sub[np.lexsort((sub, -a[sub], place[sub]))]
    return order


def source_values(mk: Market, lam: FloatArray) -> FloatArray:
    """Each source's welfare per GPU less the prices `lam` of the GPU-slots it takes."""
    cum = np.zeros((lam.shape[0], lam.shape[1] + 1))
    np.cumsum(lam, axis=1, out=cum[:, 1:])
    p = mk.k_place
    out: FloatArray = mk.k_value - (cum[mk.k_offer, mk.p_end[p]] - cum[mk.k_offer, mk.p_start[p]])
    return out


def _priced(mk: Market, lam: FloatArray) -> tuple[IntArray, IntArray, FloatArray]:
    """Each placement's best fill at prices `lam`: the sources in (placement, priced value) order,
    the GPUs each takes, and each placement's priced value."""
    a = source_values(mk, lam)
    order = _by_place_then_value(mk.k_place, a)
    a_s = a[order]
    place_s = mk.k_place[order]
    bid = mk.p_bid
    take = fill(
        mk.k_ub[order],
        np.where(a_s > 0, 1, 0).astype(np.int64),
        mk.p_kstart[:-1],
        place_s,
        mk.b_gpus[bid],
        mk.b_min[bid],
    )
    val = np.asarray(np.bincount(place_s, weights=take * a_s, minlength=mk.n_places), dtype=np.float64)
    return order, take, val


def placement_values(mk: Market, lam: FloatArray) -> FloatArray:
    """Each placement's value at capacity prices `lam` (its best fill, priced GPU-slots off)."""
    return _priced(mk, lam)[2]


def _evaluate(mk: Market, lam: FloatArray) -> tuple[float, FloatArray, IntArray, FloatArray]:
    """L(lam), usage of the subproblems' answer per (offer, slot), and per-bid best values."""
    n_o, slots = lam.shape
    order, take, val = _priced(mk, lam)
    place_s = mk.k_place[order]
    s = mk.p_start[mk.k_place]
    e = mk.p_end[mk.k_place]
    bid = mk.p_bid
    group = mk.b_group[bid]
    best = np.zeros(mk.n_groups)
    np.maximum.at(best, group, val)
    bound = float((lam.sum(axis=1) * mk.o_gpus).sum() + best.sum())
    # the chosen placement of each group (first maximum with a positive value)
    is_best = (val >= best[group] - 1e-9) & (val > 1e-9)
    chosen = np.full(mk.n_groups, -1, dtype=np.int64)
    idx = np.flatnonzero(is_best)
    chosen[group[idx[::-1]]] = idx[::-1]
    sel = np.zeros(mk.n_places, dtype=bool)
    sel[chosen[chosen >= 0]] = True
    ks = np.flatnonzero(sel[place_s] & (take > 0))
    diff = np.zeros((n_o, slots + 1))
    np.add.at(diff, (mk.k_offer[order][ks], s[order][ks]), take[ks])
    np.add.at(diff, (mk.k_offer[order][ks], e[order][ks]), -take[ks])
    usage = np.cumsum(diff, axis=1)[:, :slots]
    bid_best = np.zeros(mk.b_gpus.size)
    np.maximum.at(bid_best, bid, val)
    return bound, usage, chosen, bid_best


# Subgradient steps follow a deflected direction, d = g + DEFLECTION * d_prev (Camerini, Fratta and
# Maffioli), and the step factor halves after STALL_STEPS steps without a better bound. Measured
# at 400 steps, from the engine's greedy (2026-12-02): large-31 44,938,590 (plain subgradient,
# halving after 5: 45,199,604; the LP bound is 45,248,084), xlarge-41 193,533,150 (plain:
# 194,303,501; its LP bound is 193,561,163, computed offline in 16 minutes). Plain steps zig-zag
# between prices that overshoot and undershoot the same offers; the deflection averages that out.
DEFLECTION = 0.7
STALL_STEPS = 20


def lagrangian_bound(mk: Market, *, target: float, seconds: float, max_iter: int = 400) -> LagrangeResult:
    """Subgradient descent on L(lam) for at most `seconds` (deterministic for a fixed iteration
    count; the time cap makes the last digits of the bound depend on the machine's speed)."""
    t0 = time.perf_counter()
    slots = mk.rnd.slots
    inside = (np.arange(slots)[None, :] >= mk.o_start[:, None]) & (
        np.arange(slots)[None, :] < mk.o_end[:, None]
    )
    lam = np.zeros((mk.o_gpus.size, slots))
    best_bound = np.inf
    best_lam = lam.copy()
    best_score = np.zeros(mk.b_gpus.size)
    theta = 1.0
    stall = 0
    it = 0
    direction = np.zeros_like(lam)
    while it < max_iter and time.perf_counter() - t0 < seconds:
        it += 1
        bound, usage, _, score = _evaluate(mk, lam)
        if bound < best_bound - 1e-6:
            best_bound, best_lam, best_score = bound, lam.copy(), score
            stall = 0
        else:
            stall += 1
            if stall >= STALL_STEPS:
                theta *= 0.5
                stall = 0
        grad = np.where(inside, mk.o_gpus[:, None] - usage, 0.0)
        direction = grad + DEFLECTION * direction
        # projected direction: a price at zero with slack capacity cannot go lower
        direction = np.where((lam <= 0) & (direction > 0), 0.0, direction)
        norm = float((direction * direction).sum())
        if norm <= 1e-12 or bound - target <= 1e-9 * max(1.0, target):
            break
        step = theta * (bound - target) / norm
        lam = np.maximum(lam - step * direction, 0.0)
    return LagrangeResult(float(best_bound), best_lam, best_score, it, time.perf_counter() - t0)
