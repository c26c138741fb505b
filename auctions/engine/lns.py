"""Large neighbourhood search for large sub-markets (fix and optimise).

Take a block of offers; the bids whose award draws from it, and the losing bids of free XOR groups
that could draw from it, are freed; every other award stays fixed and its usage is taken off the
capacity. The freed bids' MIP (natural form, all their placements, HiGHS for a few seconds,
started from their current awards) can only do as well or better; the result is kept when the
whole allocation improves and passes the caller's checker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from .formulation import IntArray, Market
from .heuristics import Allocation, from_x
from .solve import SolverFailed, solve_mip_natural

log = logging.getLogger(__name__)

BLOCK_OFFERS = 10
SUB_SECONDS = 5.0


def _blocks(mk: Market, size: int, shift: int) -> list[list[int]]:
    offs = mk.rnd.offers
    order = sorted(
        range(len(offs)), key=lambda o: (offs[o].gpu_model, offs[o].cluster, offs[o].start_slot, o)
    )
    order = order[shift:] + order[:shift]
    return [sorted(order[i : i + size]) for i in range(0, len(order), size)]


def _usage(mk: Market, x: IntArray, bids: IntArray) -> IntArray:
    """GPUs used per (offer, slot) by the awards of `bids`."""
    ks = np.flatnonzero(x)
    ks = ks[np.isin(mk.p_bid[mk.k_place[ks]], bids)]
    slots = mk.rnd.slots
    diff = np.zeros((mk.o_gpus.size, slots + 1), dtype=np.int64)
    p = mk.k_place[ks]
    np.add.at(diff, (mk.k_offer[ks], mk.p_start[p]), x[ks])
    np.add.at(diff, (mk.k_offer[ks], mk.p_end[p]), -x[ks])
    out: IntArray = np.cumsum(diff, axis=1)[:, :slots]
    return out


def improve(
    mk: Market,
    inc: Allocation,
    *,
    deadline: float,
    gap: float,
    valid: Callable[[Market, Allocation], bool],
    restrict: Callable[[Market, np.ndarray], tuple[Market, IntArray]],
) -> Allocation:
    """Sweep blocks of offers (then shifted blocks) until the deadline; returns the best found."""
    best = inc
    best_w = inc.welfare(mk)
    n_off = len(mk.rnd.offers)
    size = min(BLOCK_OFFERS, max(n_off, 1))
    shifts = [0, size // 2, size // 4, 3 * size // 4]
    sweep = 0
    while time.perf_counter() < deadline - 1.0:
        shift = shifts[sweep % len(shifts)]
        sweep += 1
        for block in _blocks(mk, size, shift):
            left = deadline - time.perf_counter()
            if left < 1.0:
                break
            in_b = np.zeros(n_off, dtype=bool)
            in_b[block] = True
            ks = np.flatnonzero(best.x)
            freed = np.unique(mk.p_bid[mk.k_place[ks[in_b[mk.k_offer[ks]]]]])
            winners = np.flatnonzero(best.chosen >= 0)
            fixed = np.setdiff1d(winners, freed)
            blocked = np.zeros(mk.n_groups, dtype=bool)
            blocked[mk.b_group[fixed]] = True
            touches = np.zeros(len(mk.rnd.bids), dtype=bool)
            touches[mk.p_bid[mk.k_place[in_b[mk.k_offer]]]] = True
            touches[freed] = True
            nb = np.flatnonzero(touches & ~blocked[mk.b_group])
            keep = np.isin(mk.p_bid, nb)
            if not keep.any():
                continue
            sub, kmap = restrict(mk, keep)
            cap = mk.o_gpus[:, None] - _usage(mk, best.x, fixed)
            try:
                mip = solve_mip_natural(
                    sub, time_limit=min(SUB_SECONDS, left - 0.5), gap=gap, warm=best.x[kmap], cap=cap
                )
            except SolverFailed:
                continue
            x = best.x.copy()
            x[kmap] = mip.x
            cand = from_x(mk, x)
            w = cand.welfare(mk)
            if w > best_w + 1e-6 and valid(mk, cand):
                log.debug("LNS: %d bids freed: %.0f -> %.0f", nb.size, best_w, w)
                best, best_w = cand, w
    return best
