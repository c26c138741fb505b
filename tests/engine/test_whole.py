"""Sub-markets solved whole (`solve.WholeNatural`): one natural-form model in the thread's HiGHS
instance, its MIP and then its LP relaxation. The LP must be the flow form's LP (same bound), its
duals, summed per checkpoint interval, an optimal dual of that LP (the prices the docs define)
and convex-hull prices (the engine's Lagrangian attains the LP bound there),
its MIP the one a fresh instance solves, and a reused instance must honour every clearing's own
time limit however long it has run before."""

from __future__ import annotations

import copy
import threading
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import auctions.engine.solve as solve
from auctions.engine.clearing import clear
from auctions.engine.components import components
from auctions.engine.formulation import FlowLP, Market, build_market, flow_lp
from auctions.engine.lagrange import _evaluate

from .checker import problems
from .conftest import load_round
from .generated import generated_round
from .test_build import parsed, rounds


def priced_lp_value(mt: FlowLP, duals: np.ndarray) -> float:
    """max c.v over the flow LP (with its source bounds) without its capacity bounds, each
    GPU-slot of y charged `duals`, plus the charges of the capacities: the LP's Lagrangian at
    `duals`. At least the LP's optimum for any duals >= 0 (weak duality), equal to it exactly for
    an optimal dual (LP strong duality)."""
    assert mt.mk is not None
    h = solve.bare_highs()
    cost = -mt.c.astype(float)
    n_zx = mt.n_z + mt.n_x
    cost[n_zx:] = duals
    upper = mt.col_upper.copy()
    upper[n_zx:] = np.inf
    replace(mt, c=-cost, col_upper=upper).pass_to(h)
    solve.add_source_bounds(h, mt.mk)
    h.run()
    assert h.getModelStatus().name == "kOptimal"
    return -float(h.getInfo().objective_function_value) + float(mt.col_upper[n_zx:] @ duals)


def hull_value(mk: Market, duals: np.ndarray) -> float:
    """The engine's Lagrangian (`lagrange._evaluate`: capacity priced, each bid's choice of
    placement and sources exact and integral) at the checkpoint duals, each on its checkpoint's
    slot: a source pays the duals of the checkpoints in its interval, as in the flow form. At
    least the integer optimum for any duals; equal to the LP's optimum only when the LP is the
    convex hull of the bids' choices and the duals are optimal: convex-hull prices."""
    lam = np.zeros((mk.o_gpus.size, mk.rnd.slots))
    np.add.at(lam, (mk.r_offer, mk.r_slot), duals)
    return _evaluate(mk, lam)[0]


def whole_differences(mk: Market) -> list[str]:
    out: list[str] = []
    wn = solve.WholeNatural(mk, time_limit=30.0, gap=1e-4)
    mip = wn.mip()
    lp = wn.lp(time_limit=30.0)
    mt = flow_lp(mk)
    ref = solve.solve_lp(mt, solver="HIGHS", time_limit=30.0)
    fresh = solve.solve_mip_natural(mk, time_limit=30.0, gap=1e-4, warm=None)
    tol = 1e-6 * max(1.0, abs(ref.objective))
    if not (lp.optimal and ref.optimal):
        return [f"LP not optimal: whole {lp.optimal}, flow {ref.optimal}"]
    if abs(lp.objective - ref.objective) > tol:
        out.append(f"LP bound {lp.objective} != flow LP {ref.objective}")
    if lp.duals.shape != (mt.n_y,) or np.any(lp.duals < 0):
        out.append("duals: one per checkpoint row, never negative")
    elif abs(priced_lp_value(mt, lp.duals) - ref.objective) > 1e-5 * max(1.0, abs(ref.objective)):
        out.append(f"duals not optimal for the flow LP: {priced_lp_value(mt, lp.duals)} vs {ref.objective}")
    elif abs(hull_value(mk, lp.duals) - ref.objective) > 1e-5 * max(1.0, abs(ref.objective)):
        out.append(f"not convex-hull prices: Lagrangian {hull_value(mk, lp.duals)} vs LP {ref.objective}")
    if mip.optimal != fresh.optimal or not np.array_equal(mip.x, fresh.x):
        out.append("MIP differs from a fresh instance's")
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds())
def test_whole_lp_is_the_flow_lp_and_its_duals_are_optimal_there_on_random_rounds(doc):
    for part in components(parsed(doc)):
        mk = build_market(part)
        if mk.n_places:
            assert whole_differences(mk) == []


@pytest.mark.parametrize("doc", [generated_round(s) for s in range(3)] + [load_round("small-12")])
def test_whole_lp_is_the_flow_lp_and_its_duals_are_optimal_there_on_generated_rounds(doc):
    for part in components(parsed(doc)):
        mk = build_market(part)
        if mk.n_places:
            assert whole_differences(mk) == []


def in_fresh_thread(doc: dict[str, Any], time_limit: float) -> dict[str, Any]:
    """Clear in a new thread: a HiGHS instance that has never run."""
    out: dict[str, Any] = {}
    t = threading.Thread(target=lambda: out.update(clear(doc, time_limit=time_limit)))
    t.start()
    t.join()
    return out


def without_stats(result: dict[str, Any]) -> dict[str, Any]:
    r = copy.deepcopy(result)
    r.pop("stats")
    return r


def test_an_instance_that_ran_past_the_time_limit_still_clears_the_next_round_in_full():
    # HiGHS's run clock counts every run of an instance, and an LP's time limit is read against
    # it: the thread's instance first runs well past the next clearing's whole time limit (a MIP
    # stopped at 1.5 s), then small-12 gets 0.5 s (it needs ~0.03). Without the LP's limit set past
    # that clock its LP would stop at once: no capacity prices (every price its reserve), a
    # MIP-only bound; with a MIP limit read the same way, no award.
    medium = parsed(load_round("medium-21"))
    mk = build_market(max(components(medium), key=lambda p: len(p.bids)))
    wn = solve.WholeNatural(mk, time_limit=1.5, gap=0.0)
    # run() straight, not mip(): only the clock matters here, and a slow machine may stop this
    # MIP at 1.5 s before any incumbent (mip() then raises SolverFailed; CI did, once)
    wn.h.run()
    wn.h.clearModel()
    assert solve.reused_highs().getRunTime() > 1.0
    doc = load_round("small-12")
    result = clear(doc, time_limit=0.5)
    assert problems(doc, result) == []
    assert result["status"] == "optimal"
    assert result["welfare_cents"] == 517776
    fresh = in_fresh_thread(doc, 0.5)
    assert without_stats(result) == without_stats(fresh)
    # the prices carry capacity duals: this round shows a clock-blind LP limit
    reserves = {o["id"]: o["reserve_cents_per_gpu_hour"] for o in doc["offers"]}
    assert any(
        a["payment_cents"]
        > sum(reserves[s["offer"]] * s["gpus"] for s in a["sources"])
        * (a["end_slot"] - a["start_slot"])
        * doc["slot_minutes"]
        // 60
        for a in fresh["awards"]
    )
