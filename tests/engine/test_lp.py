"""The LP relaxation through highspy's array `passModel` (`formulation.flow_lp`, `solve.solve_lp`)
is the LP the engine solved before through cvxpy's HiGHS interface (`qp_data` +
`HIGHS().solve_via_data`, kept below as the reference): same arrays, same model in HiGHS, and
identical objective, primal values and capacity duals, bit for bit (LP duals are not unique, so
prices depend on HiGHS receiving exactly the same model)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings

import auctions.engine.solve as solve
from auctions.engine.components import components
from auctions.engine.formulation import Market, Matrices, build_market, build_matrices, flow_lp

from .conftest import load_round
from .generated import generated_round
from .test_build import parsed, rounds, same_arrays

LP_FIELDS = (
    "c",
    "col_lower",
    "col_upper",
    "row_lower",
    "row_upper",
    "a_start",
    "a_index",
    "a_value",
)


def qp_data(mt: Matrices) -> dict[str, Any]:
    """The previous engine's LP data for cvxpy's QP solver interfaces (verbatim)."""
    n = int(mt.c.size)
    return {
        "P": sp.csc_matrix((n, n)),
        "q": -mt.c,
        "A": mt.a_flow.tocsc(),
        "b": np.zeros(mt.a_flow.shape[0]),
        "F": mt.a_link.tocsc(),
        "G": mt.b_link.astype(float),
        "lower_bounds": mt.lb.copy(),
        "upper_bounds": np.concatenate([mt.ub[: mt.n_z + mt.n_x], mt.cap]),
        "n_var": n,
        "n_eq": int(mt.a_flow.shape[0]),
        "n_ineq": int(mt.a_link.shape[0]),
    }


def reference_lp(mt: Matrices, time_limit: float = 30.0) -> tuple[bool, float, Any, Any, Any]:
    """The LP as the previous engine solved it: (optimal, objective, col_value, col_dual, the
    Highs instance)."""
    from cvxpy.reductions.solvers.qp_solvers.highs_qpif import HIGHS

    extra: dict[str, Any] = {"solver": "ipm"} if mt.c.size > solve.IPM_COLUMNS else {}
    cache: dict[str, Any] = {}
    res = HIGHS().solve_via_data(
        qp_data(mt), False, False, solve._highs_opts("HIGHS", time_limit, extra), solver_cache=cache
    )
    return (
        res["model_status"] == "kOptimal",
        -float(res["info"].objective_function_value),
        np.asarray(res["solution"].col_value, dtype=float),
        np.asarray(res["solution"].col_dual, dtype=float),
        cache["HIGHS"][0],
    )


def lp_differences(mk: Market) -> list[str]:
    """`flow_lp` against the arrays cvxpy stacked, the LP HiGHS holds after loading each, and the
    answers of both paths."""
    mt = build_matrices(mk)
    new, old = flow_lp(mk), solve.lp_of_matrices(mt)
    out = [name for name in LP_FIELDS if not same_arrays(new, old, name)]
    out += [name for name in ("n_z", "n_x", "n_y", "nnz") if getattr(new, name) != getattr(old, name)]
    if new.nnz != mt.nnz or new.c.size != mt.c.size:
        out.append("matrices.nnz")
    ok, objective, col_value, col_dual, h_old = reference_lp(mt)
    h_new = solve.quiet_highs()
    new.pass_to(h_new)
    lp_new, lp_old = h_new.getLp(), h_old.getLp()
    for name in (
        "col_cost_",
        "col_lower_",
        "col_upper_",
        "row_lower_",
        "row_upper_",
        "num_col_",
        "num_row_",
        "sense_",
        "offset_",
    ):
        a, b = np.asarray(getattr(lp_new, name)), np.asarray(getattr(lp_old, name))
        if a.shape != b.shape or not np.array_equal(a, b):
            out.append(f"highs.{name}")
    if not same_arrays(lp_new.a_matrix_, lp_old.a_matrix_, "format_", "start_", "index_", "value_"):
        out.append("highs.a_matrix_")
    # no integer column either way (the array overload takes an integrality array: all continuous)
    if any(int(v) for v in lp_new.integrality_) or any(int(v) for v in lp_old.integrality_):
        out.append("highs.integrality_")
    # (the plain LP: the source bounds the engine adds are rows cvxpy's interface never had)
    res = solve.solve_lp(new, solver="HIGHS", time_limit=30.0, source_bounds=False)
    if res.optimal != ok:
        out.append("optimal")
    elif ok:
        nzx = mt.n_z + mt.n_x
        if res.objective != objective:
            out.append("objective")
        if not np.array_equal(res.z, col_value[: mt.n_z]) or not np.array_equal(
            res.x, col_value[mt.n_z : nzx]
        ):
            out.append("primal")
        if not np.array_equal(res.duals, np.maximum(-col_dual[nzx:], 0.0)):
            out.append("duals")
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds())
def test_direct_lp_equals_the_cvxpy_interface_lp_on_random_rounds(doc):
    rnd = parsed(doc)
    for part in [rnd, *components(rnd)]:
        mk = build_market(part)
        if mk.n_places:
            assert lp_differences(mk) == []


@pytest.mark.parametrize("seed", range(4))
def test_direct_lp_equals_the_cvxpy_interface_lp_on_generated_rounds(seed):
    mk = build_market(parsed(generated_round(seed, n_bids=60 + 40 * seed)))
    assert mk.n_places > 0
    assert lp_differences(mk) == []


@pytest.mark.parametrize("name", ["tiny", "small-11", "small-12", "medium-21"])
def test_direct_lp_equals_the_cvxpy_interface_lp_on_sample_rounds(name):
    for part in components(parsed(load_round(name))):
        mk = build_market(part)
        if mk.n_places:
            assert lp_differences(mk) == []


@pytest.mark.parametrize("name", ["small-11", "medium-21"])
def test_direct_lp_equals_the_cvxpy_interface_lp_with_the_interior_point_option(monkeypatch, name):
    monkeypatch.setattr(solve, "IPM_COLUMNS", 0)
    for part in components(parsed(load_round(name))):
        mk = build_market(part)
        if mk.n_places:
            assert lp_differences(mk) == []


def test_solve_lp_takes_matrices_or_the_flow_lp():
    mk = build_market(parsed(load_round("small-12")))
    a = solve.solve_lp(build_matrices(mk), solver="HIGHS", time_limit=30.0)
    b = solve.solve_lp(flow_lp(mk), solver="HIGHS", time_limit=30.0, source_bounds=False)
    assert a.optimal and b.optimal and a.objective == b.objective
    assert np.array_equal(a.duals, b.duals) and np.array_equal(a.x, b.x)
    # the engine's LP (source bounds added) is never weaker; small-11's reaches its optimum
    strong = solve.solve_lp(flow_lp(mk), solver="HIGHS", time_limit=30.0)
    assert strong.optimal and strong.objective <= b.objective + 1e-6
    mk11 = build_market(parsed(load_round("small-11")))
    plain11 = solve.solve_lp(flow_lp(mk11), solver="HIGHS", time_limit=30.0, source_bounds=False)
    strong11 = solve.solve_lp(flow_lp(mk11), solver="HIGHS", time_limit=30.0)
    assert round(plain11.objective) == 1332296 and round(strong11.objective) == 1332232
