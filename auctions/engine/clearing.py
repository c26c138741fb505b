"""Round file in, result file out: split, solve each sub-market, price, explain, merge."""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from fractions import Fraction
from functools import partial
from typing import Any

import numpy as np

from . import lns, pricing
from .components import components
from .formulation import (
    REASON_NO_OFFER,
    FloatArray,
    IntArray,
    Market,
    build_market,
    build_matrices,
    flow_lp,
    sorted_unique,
)
from .guide import LPGuide
from .heuristics import (
    Allocation,
    best_greedy,
    from_x,
    greedy_orders,
    order_search,
    priced_greedy,
    while_they_fit,
)
from .lagrange import LagrangeResult, lagrangian_bound
from .rounds import RESULT_FORMAT, Round, parse_round
from .solve import Handover, SolverFailed, WholeNatural, solve_lp, solve_mip, solve_mip_natural

log = logging.getLogger(__name__)

DEFAULT_GAP = 1e-4
# Sub-markets with more model columns than this get the large-round path (LP first, then a MIP on
# the most promising placements); below it the full MIP is solved directly, warm-started.
FULL_MIP_COLUMNS = 40_000
# The full MIP goes to HiGHS directly on the natural formulation (a capacity row per offer per
# slot) up to this many non-zeros there; above, the flow form through cvxpy.
NATURAL_MAX_NNZ = 1_500_000
# The full MIP hands the rest of its time to the search (`lns.improve`) when, after
# HANDOVER_SHARE of the time, its gap is still above HANDOVER_GAP; on sub-markets of at least
# SEARCH_MIN_COLUMNS flow-form columns. The sub-market then goes on as a large one (Lagrangian
# bound, prices and start, then the search from the best of that start and the MIP's incumbent).
# A MIP that ran to its own limit without a handover (gap below HANDOVER_GAP but not proven)
# has its LP, then the Lagrangian start gets HANDOVER_LAGRANGE of the time left and the search
# the rest. See *Solving* in docs/engine.md.
HANDOVER_SHARE = 0.3
HANDOVER_GAP = 0.01
SEARCH_MIN_COLUMNS = 2_000
HANDOVER_LAGRANGE = 0.1
# What a clearing keeps back of its time limit. Parts cleared one after the other: 3% of the
# limit, at most a second, for assembling the result and for a part that overran inside HiGHS.
# A search: SEARCH_PRICING_SHARE of its sub-market's budget for pricing, then a second (at most
# 5%) for HiGHS's overruns (`_search_stop`). Until session 22 these were 3% and 2% of the
# budget, when pricing xlarge-41 took ~1.5% of its 600 s; it takes 0.14 s now (assembling 0.02
# s), so large-31 ended at 112.4 s of 120 and xlarge-41 at ~570 s of 600, searching neither's
# last 8 s and 30 s.
SERIAL_RESERVE = 0.03
SEARCH_PRICING_SHARE = 0.005
# A MIP that ran to its limit unproven is followed by the search when at least a second is left
# for it, or this share of a shorter budget (a fixed second until session 15: medium-21 at 2 s
# stopped at 0.9 s).
SEARCH_MIN_SHARE = 0.2
# Greedy's orders (the floor) are tried while they fit in this share of a sub-market's time
# (`heuristics.greedy_orders`; docs/engine.md *Solving*, *Heuristics first*), or in this many
# seconds if more: a part left no time (earlier parts overran inside HiGHS) ran only the first
# order, and a fuzzed round fell below greedy's best (895,898 against 896,865 cents at 1 s) where
# the other orders took 1.5 ms each.
GREEDY_SHARE = 0.25
GREEDY_MIN_S = 0.05
# A full MIP whose bids have more placements each than this on average (windows much wider than
# their durations: hundreds of start times) runs with HiGHS's light presolve. The full presolve
# does not check its clock (HiGHS issues #1501, #2226) and on such models took 2-25 s for
# 35k-640k non-zeros (medium-21 and generated mid-size rounds, 9-13 placements per bid: 1-2.6 s),
# so a 10 s clearing took up to 22.5 s and its MIP ended without a solution; with the light one
# those MIPs start searching within ~1 s. Measured in session 12, docs/engine.md *Solving*. 32
# until session 13: fuzzed sub-markets of 17-32 placements per bid gained up to +8.7% at 16
# (never lower on 14 of them; -1.05% to +0.6% on generated rounds of that shape where the MIP
# works); the sample rounds have 4-10.
WIDE_PLACEMENTS_PER_BID = 16
LIGHT_PRESOLVE = {"presolve_mode": 2}
# ... and so does any full MIP of a sub-market given less than this many seconds: the full
# presolve alone took 1.9 s of a fuzzed 272-bid part with 17 sources per placement whatever its
# limit (`fuzz_round(17)`: 2.5 s for 1 s, 2.6 s for 2 s, 3.0 s for 3 s; light 1.3, 1.9 and
# 2.2 s, same welfare), and medium-21 did as well or better with it at 2-4 s (6,715,189
# against 6,680,245 cents at 2 s, equal at 3 and 4 s, each run once); from 5 s its bound, and at
# 9-30 s also its incumbent, are better with the full presolve (session 11). Session 14,
# docs/engine.md *Solving*.
LIGHT_PRESOLVE_BELOW_S = 4.0
# Such a sub-market first gets a better floor than greedy: hill climbing over greedy orders
# (`heuristics.order_search`), at most WIDE_ORDER_MOVES greedy passes and WIDE_ORDER_SHARE of its
# time. Measured in session 13, docs/engine.md *Wide windows*.
WIDE_ORDER_MOVES = 300
WIDE_ORDER_SHARE = 0.1
# ... and goes straight to the search (the large-round path) when its natural model has more
# non-zeros than this per second of its time: HiGHS's MIP on such models found nothing better
# than greedy before ~17-25 s per 300k non-zeros (session 13, docs/engine.md *Wide windows*).
WIDE_NNZ_PER_SECOND = 20_000
# Placements per bid kept for the restricted MIP of large sub-markets.
TOP_PLACEMENTS = 4
# Below this many model columns in total, sub-markets are solved in-process (process start-up
# would cost more than it saves).
PARALLEL_MIN_COLUMNS = 20_000
# The search of a sub-market cleared in this process solves its moves in one helper process per
# core (`lns.Moves`), at most SEARCH_HELPERS_MAX (measured on 2 cores only; more moves at once
# start from staler incumbents), when it has at least SEARCH_HELPERS_MIN_S to go.
SEARCH_HELPERS_MAX = 4
SEARCH_HELPERS_MIN_S = 5.0
# A large sub-market's LP is solved beside its start and search, as the search's guide
# (`guide.LPGuide`), when it has helpers and its flow form (about 3 non-zeros per placement, 4 per
# source, 2 per checkpoint) should be solved within GUIDE_SHARE of its time at
# GUIDE_NNZ_PER_SECOND: HiGHS's interior point method took 24.5 s for large-31's 572k (23k a
# second, alone on the 2-core machine) and 984 s for xlarge-41's 7M; the LP then arrives while
# the re-pack passes still run. docs/engine.md, *The LP as a guide*.
GUIDE_NNZ_PER_SECOND = 20_000
GUIDE_SHARE = 0.25

REASON_XOR = "xor_sibling_won"
REASON_OUTBID = "outbid"
REASON_TIME_LIMIT = "time_limit"

STATUS_RANK = {"optimal": 0, "time_limit": 1, "error": 2}


# Scales of the Lagrangian prices for the price-guided greedy passes (each ~0.04 s on large-31,
# ~0.3 s on xlarge-41); with the deflected bound's prices, 0.35 did best on both (92.6% and 93.4%
# of the bound; 1.0: 92.3% and 91.1%).
PRICE_SCALES = (0.35, 0.5, 0.65, 0.8)


def _hours(slots: int, slot_minutes: int) -> Fraction:
    return Fraction(slots * slot_minutes, 60)


def _num(v: Fraction) -> int | float:
    """JSON number for an exact quantity: an int when whole, else rounded to 6 decimals."""
    if v.denominator == 1:
        return int(v)
    return round(float(v), 6)


def _valid(mk: Market, alloc: Allocation) -> bool:
    """Defensive check of rules 1-5 on the engine's own allocation (the tests use their own)."""
    x = alloc.x
    if x.size and (np.any(x < 0) or np.any(x > mk.k_ub)):
        return False
    ks = np.flatnonzero(x)
    places = np.unique(mk.k_place[ks])
    bids = mk.p_bid[places]
    if np.unique(bids).size != bids.size:
        return False
    groups = mk.b_group[bids]
    if np.unique(groups).size != groups.size:
        return False
    got = np.bincount(mk.k_place[ks], weights=x[ks], minlength=mk.n_places)[places]
    if np.any(got < mk.b_min[bids]) or np.any(got > mk.b_gpus[bids]):
        return False
    usage = np.zeros((mk.o_gpus.size, mk.rnd.slots + 1), dtype=np.int64)
    for k in ks.tolist():
        p = int(mk.k_place[k])
        usage[mk.k_offer[k], mk.p_start[p] : mk.p_end[p]] += x[k]
    return bool(np.all(usage <= mk.o_gpus[:, None]))


def _cleanup(mk: Market, alloc: Allocation) -> Allocation:
    """Drop awards that cannot be paid in whole cents with IR on both sides (welfare <= 0 or a
    rounding edge with non-hour slots); removing an award never breaks validity."""
    x = alloc.x.copy()
    for b in np.flatnonzero(alloc.chosen >= 0).tolist():
        p = int(alloc.chosen[b])
        k0, k1 = int(mk.p_kstart[p]), int(mk.p_kstart[p + 1])
        ks = [k for k in range(k0, k1) if x[k] > 0]
        ok = (
            pricing.priceable(
                int(mk.b_limit[b]),
                [int(x[k]) for k in ks],
                [int(mk.o_reserve[mk.k_offer[k]]) for k in ks],
                int(mk.b_dur[b]),
                mk.rnd.slot_minutes,
            )
            and float(sum(x[k] * mk.k_value[k] for k in ks)) > 0
        )
        if not ok:
            x[k0:k1] = 0
    return from_x(mk, x)


def _natural_nnz(mk: Market) -> int:
    """Non-zeros of the natural formulation (capacity rows dominate: one per source per slot)."""
    dur = mk.p_end[mk.k_place] - mk.p_start[mk.k_place]
    return int(dur.sum()) + 3 * mk.n_places + 2 * mk.n_sources


def _flow_cols(mk: Market) -> int:
    """Columns of the flow form (z, x and y): what decides between a full MIP and the search."""
    return mk.n_places + mk.n_sources + int(mk.r_offer.size)


def solved_whole(mk: Market, solver: str) -> bool:
    """Does this sub-market get one natural-form model for its MIP and LP (`WholeNatural`)?"""
    return (
        mk.n_places > 0
        and _flow_cols(mk) <= FULL_MIP_COLUMNS
        and solver.upper() == "HIGHS"
        and _natural_fits(mk)
    )


def _wide_windows(mk: Market) -> bool:
    """Do this sub-market's servable bids have more than WIDE_PLACEMENTS_PER_BID placements each,
    on average?"""
    servable = int(np.count_nonzero(mk.b_pstart[1:] > mk.b_pstart[:-1]))
    return mk.n_places > WIDE_PLACEMENTS_PER_BID * servable


def _natural_fits(mk: Market) -> bool:
    """Is the natural formulation within NATURAL_MAX_NNZ? (A bound on its size first: the exact
    count is three array operations, a few per cent of a tiny round's build.)"""
    if mk.n_sources * (mk.rnd.slots + 2) + 3 * mk.n_places <= NATURAL_MAX_NNZ:
        return True
    return _natural_nnz(mk) <= NATURAL_MAX_NNZ


def _trivial_bound(mk: Market) -> float:
    """Sum over XOR groups of the best isolated placement value: valid, weak; used without an LP."""
    best = np.zeros(mk.n_groups)
    if mk.n_places:
        np.maximum.at(best, mk.b_group[mk.p_bid], mk.p_best)
    return float(best.sum())


def _offerless_piece(rnd: Round, solver: str) -> dict[str, Any]:
    """The part of the round's bids that no offer shares a model with (`components`): each loses
    with `no_offer`; there is nothing to build or solve."""
    return {
        "status": "optimal",
        "bound_cents": 0,
        "awards": [],
        "offers": [],
        "prices": [],
        "losers": [{"bid": b.id, "reason": REASON_NO_OFFER} for b in rnd.bids],
        "pricing": {"rule": pricing.RULE, "uplift_cents": 0},
        "stats": {"solver": solver, "columns": 0, "nonzeros": 0, "submarkets": 1},
    }


def clear_component(
    rnd: Round, *, time_limit: float | None, gap: float, solver: str, helpers: int = 0
) -> dict[str, Any]:
    """Clear one sub-market; returns a partial gridx.result/v1 dict (merged by `assemble`). Its
    search (if it gets one) may solve its moves in `helpers` processes (`lns.Moves`)."""
    if not rnd.offers:
        return _offerless_piece(rnd, solver)
    t0 = time.perf_counter()
    deadline = None if time_limit is None else t0 + time_limit

    def left(frac: float = 1.0) -> float | None:
        if deadline is None:
            return None
        return max((deadline - time.perf_counter()) * frac, 0.05)

    mk = build_market(rnd)
    # Solved whole with HiGHS: one model, the natural form (HiGHS searches it better than the flow
    # form, and better unseeded: medium-21 99.97% of the optimum in 25 s, 99.86% seeded with
    # greedy, 99.2% on the flow form seeded), its MIP then its LP in one instance (`WholeNatural`);
    # greedy stays the floor below. Otherwise the flow form. Nothing to place (every bid loses for
    # a structural reason): no model at all.
    flow_cols = _flow_cols(mk)
    whole = solved_whole(mk, solver)
    # a part that starts after the round's deadline (clear() gives it no time) gets greedy only
    out_of_time = time_limit is not None and time_limit <= 0
    mt = flow_lp(mk) if mk.n_places and not whole and not out_of_time else None
    build_s = time.perf_counter() - t0
    compile_s = 0.0
    lp_s = mip_s = 0.0
    status = "optimal"
    bound = 0.0
    duals = np.zeros((len(rnd.offers), rnd.slots))
    alloc = from_x(mk, np.zeros(mk.n_sources, dtype=np.int64))
    # the model built: the flow form, or the natural form of a sub-market solved whole (below)
    n_model_cols, n_model_nnz = (int(mt.c.size), mt.nnz) if mt is not None else (0, 0)
    if mk.n_places:
        # the floor: greedy's orders, more of them only while they fit in a quarter of the time
        alloc, g_order = greedy_orders(
            mk,
            deadline=None if deadline is None else t0 + max(GREEDY_SHARE * (deadline - t0), GREEDY_MIN_S),
        )
        # (a wide sub-market above NATURAL_MAX_NNZ is not solved whole, but the floor and the
        # rule below apply all the same: its flow-form MIP would go through cvxpy, whose import
        # alone took 1.7 s of a 1 s clearing)
        wide = solver.upper() == "HIGHS" and _wide_windows(mk)
        # a wide sub-market too dense for its MIP in the time it has goes to the search
        large = flow_cols > FULL_MIP_COLUMNS or (
            wide and time_limit is not None and _natural_nnz(mk) > WIDE_NNZ_PER_SECOND * time_limit
        )
        # a large one's LP, when affordable, starts now in a process of its own (`guide`), beside
        # the order search and the Lagrangian, which leave a core idle
        lp_guide = (
            _start_guide(mk, t0, deadline, helpers)
            if large and solver.upper() == "HIGHS" and not out_of_time
            else None
        )
        # a large wide one without the guide: its Lagrangian in a process of its own, beside the
        # order search, which leaves a core idle (xlarge-41: 48 s, then 60 s, one after the other)
        idle_core = large and wide and lp_guide is None and helpers >= 1 and deadline is not None
        beside = (
            _Beside(lagrangian_bound, mk, target=alloc.welfare(mk), seconds=left(0.3) or 120.0)
            if idle_core and not out_of_time
            else None
        )
        if wide and not out_of_time:
            # a better floor than greedy (the MIP often finds nothing better than greedy there at
            # a few seconds): hill climbing over greedy orders
            t_ord = time.perf_counter()
            stop = None if deadline is None else t_ord + WIDE_ORDER_SHARE * (deadline - t_ord)
            cand = order_search(mk, moves=WIDE_ORDER_MOVES, deadline=stop, start=(alloc, g_order))
            if cand.welfare(mk) > alloc.welfare(mk) + 1e-6:
                alloc = cand
            mip_s += time.perf_counter() - t_ord
        if out_of_time:
            large = False
            bound = _trivial_bound(mk)
            status = "time_limit"
        elif not large:
            search = solver.upper() == "HIGHS" and deadline is not None and flow_cols >= SEARCH_MIN_COLUMNS
            short = time_limit is not None and time_limit < LIGHT_PRESOLVE_BELOW_S
            options = LIGHT_PRESOLVE if (wide or short) and whole else None
            handover = None
            if search and whole and time_limit is not None:
                # its share of the time the MIP gets, against the floor held by then
                spent = time.perf_counter() - t0
                handover = Handover(HANDOVER_SHARE * (time_limit - spent), HANDOVER_GAP, alloc.welfare(mk))
            wn = (
                WholeNatural(mk, time_limit=left(0.9), gap=gap, handover=handover, options=options)
                if whole
                else None
            )
            if wn is not None:
                n_model_cols, n_model_nnz, compile_s = wn.num_col, wn.nnz, wn.compile_s
            proven = False
            t_mip = time.perf_counter()
            try:
                if wn is not None:
                    mip = wn.mip()
                else:
                    assert mt is not None
                    mip = solve_mip(mk, mt, solver=solver, time_limit=left(0.9), gap=gap, warm=alloc.x)
                mip_s, compile_s = mip_s + mip.seconds, mip.compile_s
                cand = from_x(mk, mip.x)
                if _valid(mk, cand) and cand.welfare(mk) >= alloc.welfare(mk) - 1e-6:
                    alloc = cand
                bound = mip.dual_bound if mip.dual_bound is not None else math.inf
                proven = mip.optimal
            except SolverFailed as exc:
                log.warning("MIP failed on a sub-market of %d bids: %s", len(rnd.bids), exc)
                mip_s += time.perf_counter() - t_mip  # its time still counts in the stats
                bound = math.inf
            # a MIP handed over goes on as a large sub-market (below), from its incumbent, with its
            # dual bound: its LP would cost 1-9 s on 13k-30k columns for prices and a bound the
            # Lagrangian gives in ~1 s
            large = wn is not None and wn.interrupted()
            if not large:
                if wn is not None:
                    lp = wn.lp(time_limit=left())
                else:
                    assert mt is not None
                    lp = solve_lp(mt, solver=solver, time_limit=left())
                lp_s = lp.seconds
                compile_s += lp.compile_s
                if lp.optimal:
                    np.add.at(duals, (mk.r_offer, mk.r_slot), lp.duals)
                    bound = min(bound, lp.objective)
                elif deadline is not None:
                    # the LP did not finish in the time its MIP left (dense models, bids with
                    # hundreds of start times): the Lagrangian gives a bound and prices in a
                    # fraction of a second, where the trivial bound was 35% above the optimum
                    lag = lagrangian_bound(mk, target=alloc.welfare(mk), seconds=left(0.5) or 0.05)
                    lp_s += lag.seconds
                    bound = min(bound, lag.bound)
                    duals = lag.lam
                if not math.isfinite(bound):
                    bound = _trivial_bound(mk)
                if not proven:
                    status = "time_limit"
                    stop = None if deadline is None else _search_stop(t0, deadline)
                    t_lns = time.perf_counter()
                    if (
                        search
                        and stop is not None
                        and stop - t_lns > min(1.0, SEARCH_MIN_SHARE * (stop - t0))
                    ):
                        # the Lagrangian bound is valid too (capacity priced, the rest exact):
                        # keep the tighter
                        alloc, lag = large_start(
                            mk, alloc, seconds=HANDOVER_LAGRANGE * (stop - t_lns), until=stop
                        )
                        bound = min(bound, lag.bound)
                        alloc = _search(mk, alloc, lag, stop=stop, gap=gap, bound=bound, helpers=helpers)
                        mip_s += time.perf_counter() - t_lns
            elif wn is not None:
                wn.release()
        else:
            bound = math.inf
        if large:
            # Large: a Lagrangian bound (tighter than the LP on large-31 and 2-3x faster; the LP of
            # xlarge-41 does not finish), its prices to guide the greedy and to price, then the
            # search (HiGHS) or a MIP on the most promising placements, warm-started.
            alloc, lag = large_start(
                mk,
                alloc,
                seconds=(left(0.3) or 120.0),
                until=None if deadline is None else _search_stop(t0, deadline),
                lag=None if beside is None else beside.result(),
            )
            lp_s = lag.seconds
            bound = min(bound, lag.bound)
            duals = lag.lam
            if solver.upper() == "HIGHS" and deadline is not None:
                t_lns = time.perf_counter()
                stop = _search_stop(t0, deadline)
                alloc = _search(
                    mk, alloc, lag, stop=stop, gap=gap, bound=bound, helpers=helpers, guide=lp_guide
                )
                mip_s += time.perf_counter() - t_lns
            else:
                alloc, mip_s, compile_s = _restricted_mip(mk, alloc, lag.score, solver, left(0.95), gap)
            if lp_guide is not None:
                sol = lp_guide.poll()
                if sol is not None:
                    # the LP's optimum bounds every clearing too (below the Lagrangian's when
                    # it has converged: large-31 44,877,859 against 44,944,573)
                    bound = min(bound, sol.objective)
                lp_guide.close()
            status = "time_limit"
        alloc = _cleanup(mk, alloc)
        welfare = alloc.welfare(mk)
        if welfare >= (1.0 - gap) * bound - 1e-6:
            status = "optimal"
        bound = max(bound, welfare)
    t_price = time.perf_counter()
    piece = _result_piece(mk, alloc, duals, status, bound)
    piece["stats"] = {
        "solver": solver,
        "build_s": build_s,
        "compile_s": compile_s,
        "solve_s": lp_s + mip_s,
        "lp_s": lp_s,
        "mip_s": mip_s,
        "pricing_s": time.perf_counter() - t_price,
        "columns": n_model_cols,
        "nonzeros": n_model_nnz,
        "submarkets": 1,
    }
    return piece


def _start_guide(mk: Market, t0: float, deadline: float | None, helpers: int) -> LPGuide | None:
    """The LP guide of a large sub-market (`guide.LPGuide`, until the search's stop), when this
    sub-market has the machine to itself (it may start helper processes: not in a pool of
    parts) and its LP should end within GUIDE_SHARE of the budget at GUIDE_NNZ_PER_SECOND."""
    if deadline is None or helpers < 1:
        return None
    nnz = 3 * mk.n_places + 4 * mk.n_sources + 2 * int(mk.r_offer.size)  # the flow form's, about
    if nnz > GUIDE_NNZ_PER_SECOND * GUIDE_SHARE * (deadline - t0):
        return None
    try:
        return LPGuide(mk, _search_stop(t0, deadline) - time.perf_counter())
    except (OSError, RuntimeError, ValueError) as exc:  # no process to be had: no guide
        log.warning("LP guide not started: %s", exc)
        return None


class _Beside:
    """`fn(*args, **kwargs)` in a spawned process of its own; `result` waits for its answer
    (None when the process could not start or failed: the caller computes it itself)."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._fut: Future[Any] | None = None
        try:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            self._fut = self._pool.submit(fn, *args, **kwargs)
        except (OSError, RuntimeError, ValueError) as exc:
            log.warning("no process for %s: %s", getattr(fn, "__name__", fn), exc)

    def result(self) -> Any:
        try:
            return None if self._fut is None else self._fut.result()
        except Exception as exc:  # noqa: BLE001 (any failure: computed here instead)
            log.warning("process beside failed: %s", exc)
            return None
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)  # (its process is idle by now)
                self._pool = None


def _search_stop(t0: float, deadline: float) -> float:
    """When the search of a sub-market started at `t0` stops: what is left is for pricing
    (SEARCH_PRICING_SHARE) and for a sub-MIP that overruns its limit (HiGHS checks its clock only
    now and then). The fixed part is at most 5% of the budget, so that short budgets (a 10 s
    preview) are not mostly margin."""
    budget = deadline - t0
    return deadline - SEARCH_PRICING_SHARE * budget - min(1.0, 0.05 * budget)


def _search(
    mk: Market,
    alloc: Allocation,
    lag: LagrangeResult,
    *,
    stop: float,
    gap: float,
    bound: float,
    helpers: int = 0,
    guide: LPGuide | None = None,
) -> Allocation:
    """The large-round search (`lns.improve`) from `alloc` until `stop`, its re-packs at the
    Lagrangian's prices (and the LP's placements once `guide` has them), its moves in `helpers`
    processes when it has at least SEARCH_HELPERS_MIN_S (starting them costs ~1 s)."""
    if stop - time.perf_counter() < SEARCH_HELPERS_MIN_S:
        helpers = 0

    return lns.improve(
        mk,
        alloc,
        deadline=stop,
        gap=gap,
        valid=_valid,
        restrict=_restrict,
        bound=bound,
        lam=lag.lam,
        helpers=helpers,
        guide=guide,
    )


def large_start(
    mk: Market,
    alloc: Allocation,
    *,
    seconds: float,
    until: float | None = None,
    lag: LagrangeResult | None = None,
) -> tuple[Allocation, LagrangeResult]:
    """The Lagrangian bound (at most `seconds`; `lag` when it was already computed) and the
    search's first incumbent: the best of `alloc` and the greedy passes its prices guide, each
    only if a pass as long as the last still ends by `until` (the first always runs)."""
    if lag is None:
        lag = lagrangian_bound(mk, target=alloc.welfare(mk), seconds=seconds)
    passes: list[Callable[[], Allocation]] = [partial(best_greedy, mk, lag.score, until)]
    passes += [partial(priced_greedy, mk, lag.lam, lag.score, scale) for scale in PRICE_SCALES]
    for cand in while_they_fit(passes, until):
        if cand.welfare(mk) > alloc.welfare(mk) + 1e-6:
            alloc = cand
    return alloc, lag


def _restricted_mip(
    mk: Market,
    inc: Allocation,
    bid_score: FloatArray | None,
    solver: str,
    time_limit: float | None,
    gap: float,
) -> tuple[Allocation, float, float]:
    """MIP over the most promising placements of each bid (LP value, then isolated value), plus the
    incumbent's, warm-started from the incumbent. Valid allocations of the restricted model are
    valid for the full one; its dual bound is not a bound for the full model and is not used."""
    keep = np.zeros(mk.n_places, dtype=bool)
    keep[inc.chosen[inc.chosen >= 0]] = True
    score = mk.p_best
    order = np.lexsort((np.arange(mk.n_places), -score, mk.p_bid))
    rank = np.empty(mk.n_places, dtype=np.int64)
    first = mk.b_pstart[mk.p_bid[order]]
    rank[order] = np.arange(mk.n_places) - first
    keep |= rank < TOP_PLACEMENTS
    if bid_score is not None:
        # bids the prices call profitable keep more of their placements
        keep |= (rank < 2 * TOP_PLACEMENTS) & (bid_score[mk.p_bid] > 0)
    sub, kmap = _restrict(mk, keep)
    log.info(
        "restricted MIP: %d of %d placements, natural nnz %d", sub.n_places, mk.n_places, _natural_nnz(sub)
    )
    smt = build_matrices(sub)
    warm = inc.x[kmap]
    try:
        if solver.upper() == "HIGHS" and _natural_nnz(sub) <= NATURAL_MAX_NNZ:
            mip = solve_mip_natural(sub, time_limit=time_limit, gap=gap, warm=warm)
        else:
            mip = solve_mip(sub, smt, solver=solver, time_limit=time_limit, gap=gap, warm=warm)
    except SolverFailed as exc:
        log.warning("restricted MIP failed: %s", exc)
        return inc, 0.0, 0.0
    x = np.zeros(mk.n_sources, dtype=np.int64)
    x[kmap] = mip.x
    cand = from_x(mk, x)
    if _valid(mk, cand) and cand.welfare(mk) > inc.welfare(mk) + 1e-6:
        return cand, mip.seconds, mip.compile_s
    return inc, mip.seconds, mip.compile_s


def _restrict(mk: Market, keep: np.ndarray) -> tuple[Market, IntArray]:
    """The market limited to the kept placements; returns it and the kept sources' old indices."""
    from dataclasses import replace

    places = np.flatnonzero(keep)
    ksel = keep[mk.k_place]
    kmap = np.flatnonzero(ksel)
    newp = np.cumsum(keep) - 1
    nsrc = np.diff(mk.p_kstart)[places]
    b_pstart = np.searchsorted(places, mk.b_pstart).astype(np.int64)
    stride = mk.rnd.slots + 1
    pair = sorted_unique(mk.k_offer[kmap] * stride + mk.p_start[mk.k_place[kmap]])
    sub = replace(
        mk,
        b_pstart=b_pstart,
        p_bid=mk.p_bid[places],
        p_model=mk.p_model[places],
        p_cluster=mk.p_cluster[places],
        p_start=mk.p_start[places],
        p_end=mk.p_end[places],
        p_kstart=np.concatenate(([0], np.cumsum(nsrc))).astype(np.int64),
        p_best=mk.p_best[places],
        k_place=newp[mk.k_place[kmap]],
        k_offer=mk.k_offer[kmap],
        k_margin=mk.k_margin[kmap],
        k_ub=mk.k_ub[kmap],
        k_value=mk.k_value[kmap],
        r_offer=pair // stride,
        r_slot=pair % stride,
    )
    return sub, kmap


def _result_piece(
    mk: Market, alloc: Allocation, duals: np.ndarray, status: str, bound: float
) -> dict[str, Any]:
    """Awards, offers, prices and losers of one sub-market, in integers."""
    rnd = mk.rnd
    sm = rnd.slot_minutes
    prices = pricing.unit_prices(mk, duals)
    cum = pricing.window_charges(prices)
    awards: list[dict[str, Any]] = []
    sold: dict[int, list[Fraction | int]] = {}
    index: dict[tuple[str, str, int], int] = {}
    uplift_cm = 0
    for b in np.flatnonzero(alloc.chosen >= 0).tolist():
        bid = rnd.bids[b]
        p = int(alloc.chosen[b])
        s, e = int(mk.p_start[p]), int(mk.p_end[p])
        ks = [k for k in range(int(mk.p_kstart[p]), int(mk.p_kstart[p + 1])) if alloc.x[k] > 0]
        ks.sort(key=lambda k: rnd.offers[int(mk.k_offer[k])].id)
        offs = [int(mk.k_offer[k]) for k in ks]
        g = [int(alloc.x[k]) for k in ks]
        money = pricing.award_money(
            limit=bid.limit,
            dur=bid.duration,
            slot_minutes=sm,
            gpus=g,
            reserves=[int(mk.o_reserve[o]) for o in offs],
            charges_cm=[int(cum[o, e] - cum[o, s]) * gi * sm for o, gi in zip(offs, g, strict=True)],
            offer_ids=[rnd.offers[o].id for o in offs],
        )
        uplift_cm += money.uplift_cm
        model = mk.models[int(mk.p_model[p])]
        awards.append(
            {
                "bid": bid.id,
                "gpu_model": model,
                "cluster": mk.clusters[int(mk.p_cluster[p])] if bid.colocate else None,
                "start_slot": s,
                "end_slot": e,
                "gpus": sum(g),
                "sources": [{"offer": rnd.offers[o].id, "gpus": gi} for o, gi in zip(offs, g, strict=True)],
                "payment_cents": money.payment,
            }
        )
        for o, gi, rc in zip(offs, g, money.receipts, strict=True):
            acc = sold.setdefault(o, [Fraction(0), 0])
            acc[0] = Fraction(acc[0]) + _hours(bid.duration, sm) * gi
            acc[1] = int(acc[1]) + rc
            cl = rnd.offers[o].cluster
            for t in range(s, e):
                key = (cl, model, t)
                index[key] = max(index.get(key, 0), int(prices[o, t]))
    winners = {rnd.bids[b].id for b in np.flatnonzero(alloc.chosen >= 0).tolist()}
    group_winner: dict[int, str] = {}
    for b in np.flatnonzero(alloc.chosen >= 0).tolist():
        group_winner[int(mk.b_group[b])] = rnd.bids[b].id
    losers: list[dict[str, Any]] = []
    for b, bid in enumerate(rnd.bids):
        if bid.id in winners:
            continue
        row: dict[str, Any] = {"bid": bid.id}
        structural = mk.b_reason[b]
        if structural is not None:
            row["reason"] = structural
        elif int(mk.b_group[b]) in group_winner:
            row["reason"] = REASON_XOR
            row["xor_winner"] = group_winner[int(mk.b_group[b])]
        else:
            row["reason"] = REASON_OUTBID if status == "optimal" else REASON_TIME_LIMIT
            need = pricing.price_needed(mk, b, cum)
            if need is not None:
                row["price_needed_cents_per_gpu_hour"] = max(need, bid.limit + 1)
        losers.append(row)
    return {
        "status": status,
        "bound_cents": _bound_cents(bound),
        "awards": awards,
        "offers": [
            {"offer": rnd.offers[o].id, "gpu_hours_sold": _num(Fraction(v[0])), "revenue_cents": int(v[1])}
            for o, v in sold.items()
        ],
        "prices": [
            {"cluster": c, "gpu_model": m, "slot": t, "cents_per_gpu_hour": v}
            for (c, m, t), v in index.items()
        ],
        "losers": losers,
        "pricing": {"rule": pricing.RULE, "uplift_cents": uplift_cm // 60},
    }


def _bound_cents(bound: float) -> int:
    """Whole cents, rounded up; float noise below 1e-7 relative is read as exact (an integral LP or
    MIP objective comes back as e.g. 8480.000000002)."""
    if bound <= 0:
        return 0
    return math.ceil(bound - 1e-7 * max(1.0, abs(bound)))


def empty_result(
    round_id: object, status: str, message: str, problems: list[str] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "format": RESULT_FORMAT,
        "round": round_id if isinstance(round_id, str) else None,
        "status": status,
        "message": message,
        "welfare_cents": 0,
        "bound_cents": 0,
        "awards": [],
        "offers": [],
        "prices": [],
        "losers": [],
        "pricing": {"rule": pricing.RULE, "uplift_cents": 0},
        "stats": {"solver": None, "build_s": 0.0, "solve_s": 0.0, "pricing_s": 0.0},
    }
    if problems is not None:
        out["problems"] = problems
    return out


def assemble(rnd: Round, pieces: list[dict[str, Any]], solver: str) -> dict[str, Any]:
    """Merge sub-market results into one gridx.result/v1 dict, in canonical order."""
    by_id = {b.id: b for b in rnd.bids}
    reserve = {o.id: o.reserve for o in rnd.offers}
    awards = sorted((a for p in pieces for a in p["awards"]), key=lambda a: str(a["bid"]))
    welfare_cm = 0
    for a in awards:
        b = by_id[a["bid"]]
        d = int(a["end_slot"]) - int(a["start_slot"])
        for src in a["sources"]:
            welfare_cm += (b.limit - reserve[src["offer"]]) * int(src["gpus"]) * d * rnd.slot_minutes
    index: dict[tuple[str, str, int], int] = {}
    for p in pieces:
        for row in p["prices"]:
            key = (row["cluster"], row["gpu_model"], int(row["slot"]))
            index[key] = max(index.get(key, 0), int(row["cents_per_gpu_hour"]))
    status = "optimal"
    for p in pieces:
        if STATUS_RANK.get(p["status"], 2) > STATUS_RANK[status]:
            status = p["status"]
    stats: dict[str, Any] = {"solver": solver}
    for fkey in ("build_s", "compile_s", "solve_s", "lp_s", "mip_s", "pricing_s"):
        stats[fkey] = round(sum(float(p["stats"].get(fkey, 0.0)) for p in pieces), 6)
    for ikey in ("columns", "nonzeros", "submarkets"):
        stats[ikey] = sum(int(p["stats"].get(ikey, 0)) for p in pieces)
    result: dict[str, Any] = {
        "format": RESULT_FORMAT,
        "round": rnd.round,
        "status": status,
        "welfare_cents": welfare_cm // 60,
        "bound_cents": max(sum(int(p["bound_cents"]) for p in pieces), welfare_cm // 60),
        "awards": awards,
        "offers": sorted((o for p in pieces for o in p["offers"]), key=lambda o: str(o["offer"])),
        "prices": [
            {"cluster": c, "gpu_model": m, "slot": t, "cents_per_gpu_hour": v}
            for (c, m, t), v in sorted(index.items())
        ],
        "losers": sorted((lo for p in pieces for lo in p["losers"]), key=lambda lo: str(lo["bid"])),
        "pricing": {
            "rule": pricing.RULE,
            "uplift_cents": sum(int(p["pricing"]["uplift_cents"]) for p in pieces),
        },
        "stats": stats,
    }
    return result


def _run_piece(args: tuple[Round, float | None, float, str, float]) -> dict[str, Any]:
    rnd, tl, gap, solver, submitted = args
    if tl is not None:
        # the budget counts from when the part was handed to the pool (wall clock: comparable
        # across processes); a process's start-up and imports (~0.5-1 s) come out of it
        tl = max(tl - (time.time() - submitted), 0.0)
    return clear_component(rnd, time_limit=tl, gap=gap, solver=solver)


def _can_fork_children() -> bool:
    # Celery's prefork workers are daemonic, and daemonic processes may not have children.
    return not multiprocessing.current_process().daemon


def clear(
    round_doc: dict[str, Any],
    *,
    time_limit: float | None = None,
    gap: float = DEFAULT_GAP,
    solver: str = "HIGHS",
    workers: int | None = None,
) -> dict[str, Any]:
    """Clear a gridx.round/v1 document; never raises for bad input (status infeasible_input)."""
    t0 = time.perf_counter()
    rnd, problems = parse_round(round_doc)
    if rnd is None:
        rid = round_doc.get("round") if isinstance(round_doc, dict) else None
        return empty_result(rid, "infeasible_input", "\n".join(problems), problems)
    parts = components(rnd)
    sizes = [_size_hint(p) for p in parts]
    order = sorted(range(len(parts)), key=lambda i: (-sizes[i], i))
    n_workers = workers if workers is not None else min(os.cpu_count() or 1, max(len(parts), 1))
    total = sum(sizes) or 1
    big = [i for i in order if sizes[i] > 0]
    in_processes = n_workers > 1 and len(big) > 1 and total >= PARALLEL_MIN_COLUMNS and _can_fork_children()
    slots = min(n_workers, len(big)) if in_processes else 1  # parts running at once
    # parts cleared here, one after the other: a part's search may solve its moves in that many
    # processes (in a pool of parts, each core already has a part)
    cores = workers if workers is not None else (os.cpu_count() or 1)
    helpers = min(cores, SEARCH_HELPERS_MAX) if cores > 1 and _can_fork_children() else 0
    pieces: list[dict[str, Any] | None] = [None] * len(parts)
    try:
        if in_processes:
            # keep back time for merging the parts and pricing, and for starting the processes
            end = None if time_limit is None else t0 + time_limit * 0.92
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=slots, mp_context=ctx) as pool:
                queue = big[::-1]  # smallest first
                running: dict[Future[dict[str, Any]], tuple[int, float]] = {}
                while queue or running:
                    # a part is given its time when a process takes it, from what is left then
                    # (`_pool_budget`), so that time a part does not use goes to the parts after it
                    while queue and len(running) < slots:
                        i = queue.pop(0)
                        now = time.perf_counter()
                        budget = (
                            None
                            if end is None
                            else _pool_budget(
                                sizes[i],
                                [sizes[j] for j in queue],
                                [d - now for _, d in running.values()],
                                slots,
                                end - now,
                            )
                        )
                        fut = pool.submit(_run_piece, (parts[i], budget, gap, solver, time.time()))
                        running[fut] = (i, now + (budget or 0.0))
                    for j in order:
                        if j not in big and pieces[j] is None:
                            # nothing to solve (no offers): here, while the processes work
                            pieces[j] = clear_component(
                                parts[j], time_limit=time_limit, gap=gap, solver=solver
                            )
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        i, _ = running.pop(fut)
                        pieces[i] = fut.result()
        else:
            # one after the other: each part gets its size's share of the time still left, so what
            # a part does not use flows to the parts after it; smallest first, so that the leftover
            # goes to the largest (a round of 31 small sub-markets stopped one at its share after
            # 2 s of a 10 s limit, with a status of time_limit, and proved it optimal in 2.3 s
            # when given 30 s)
            end = None if time_limit is None else t0 + time_limit - min(SERIAL_RESERVE * time_limit, 1.0)
            waiting = sum(sizes)
            for i in sorted(range(len(parts)), key=lambda i: (sizes[i], i)):
                budget = None
                if end is not None:
                    # past the deadline (earlier parts overran inside HiGHS) the rest get no time:
                    # greedy only, instead of 0.2 s each that HiGHS overran again (13 wide
                    # sub-markets at 5 s took 10.5-11.8 s)
                    rest = end - time.perf_counter()
                    share = sizes[i] / waiting if sizes[i] else 1.0
                    budget = 0.0 if rest <= 0.05 else max(rest * share, 0.2)
                    waiting -= sizes[i]
                pieces[i] = clear_component(
                    parts[i], time_limit=budget, gap=gap, solver=solver, helpers=helpers
                )
    except Exception as exc:  # noqa: BLE001 - the contract is a result with status "error", not a traceback
        log.exception("clearing failed")
        return empty_result(rnd.round, "error", f"{type(exc).__name__}: {exc}")
    result = assemble(rnd, [p for p in pieces if p is not None], solver)
    result["stats"]["wall_s"] = round(time.perf_counter() - t0, 6)
    result["stats"]["workers"] = n_workers
    return result


def _pool_budget(size: int, later: list[int], busy: list[float], slots: int, left: float) -> float:
    """Time for a part of `size` that a process takes now, `left` seconds before the pool's
    deadline, while `busy` (seconds each running part may still take) run and the parts of sizes
    `later` wait. If every waiting part has a free process, all of `left`. Otherwise its share
    of the size, scaled so that the parts still to run, each started as soon as a process is
    free, end by the deadline even if every part uses its whole time: Graham's bound for list
    scheduling, with the running parts' time counted as work already on the processes
    (`(busy + sum) / slots + (1 - 1 / slots) x max`). Never more than `left`; no time at all
    (greedy only, `clear_component`) once it is gone."""
    if left <= 0.05:
        return 0.0
    if len(later) + 1 <= slots - len(busy):
        return left
    sizes = [size, *later]
    span = sum(sizes) / slots + (1 - 1 / slots) * max(sizes)
    room = left - sum(max(b, 0.0) for b in busy) / slots
    return min(left, max(room * size / span, 0.2))


def _size_hint(rnd: Round) -> int:
    """Rough model size (bids x offers), for the time split and the choice of processes."""
    return len(rnd.bids) * max(len(rnd.offers), 0)


def split(round_doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Independent sub-markets as gridx.round/v1 documents (for clearing them as separate tasks).

    Bad input gives one part, the document itself, so that clearing it reports the problems."""
    rnd, _ = parse_round(round_doc)
    if rnd is None:
        return [round_doc]
    raw_offers = {o["id"]: o for o in round_doc["offers"]}
    raw_bids = {b["id"]: b for b in round_doc["bids"]}
    head = {k: v for k, v in round_doc.items() if k not in ("offers", "bids")}
    out: list[dict[str, Any]] = []
    lonely: list[Round] = []
    for part in components(rnd):
        if not part.offers:
            lonely.append(part)  # bids no offer can serve: one part for all of them
            continue
        out.append(
            {
                **head,
                "offers": [raw_offers[o.id] for o in part.offers],
                "bids": [raw_bids[b.id] for b in part.bids],
            }
        )
    if lonely or not out:
        out.append({**head, "offers": [], "bids": [raw_bids[b.id] for part in lonely for b in part.bids]})
    return out


def merge(round_doc: dict[str, Any], parts_results: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge the results of `split(round_doc)` parts into the round's result."""
    rnd, problems = parse_round(round_doc)
    if rnd is None:
        rid = round_doc.get("round") if isinstance(round_doc, dict) else None
        return empty_result(rid, "infeasible_input", "\n".join(problems), problems)
    for r in parts_results:
        if r.get("status") in ("infeasible_input", "error"):
            return empty_result(rnd.round, "error", f"a part failed: {r.get('message', r.get('status'))}")
    solver = next((str(r["stats"].get("solver")) for r in parts_results if r["stats"].get("solver")), "HIGHS")
    result = assemble(rnd, parts_results, solver)
    result["stats"]["wall_s"] = round(
        max((float(r["stats"].get("wall_s", 0.0)) for r in parts_results), default=0.0), 4
    )
    result["stats"]["workers"] = len(parts_results)
    return result


def dumps_result(result: dict[str, Any]) -> str:
    """Canonical JSON text: sorted keys, one space indent, integers for money, newline at the end."""
    return json.dumps(result, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
