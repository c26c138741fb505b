"""The LP relaxation through cvxpy's HiGHS solver interface (our own standard-form data) agrees
with the same LP compiled by cvxpy, also with the interior-point option used on large models."""

from __future__ import annotations

import numpy as np
import pytest

import auctions.engine.solve as solve
from auctions.engine.formulation import build_market, build_matrices
from auctions.engine.rounds import parse_round

from .conftest import load_round
from .generated import generated_round


def matrices(doc):
    rnd, _ = parse_round(doc)
    assert rnd is not None
    return build_matrices(build_market(rnd))


@pytest.mark.parametrize("ipm", [False, True])
@pytest.mark.parametrize("doc", [load_round("small-11"), generated_round(0)], ids=["small-11", "gen-0"])
def test_lp_through_the_solver_interface_matches_cvxpy(monkeypatch, doc, ipm):
    mt = matrices(doc)
    if ipm:
        monkeypatch.setattr(solve, "IPM_COLUMNS", 0)
    ours = solve.solve_lp(mt, solver="HIGHS", time_limit=30.0)
    prob, v, _, cap_con = solve._problem(mt, integer=False)
    prob.solve(solver="HIGHS")
    assert ours.optimal
    assert ours.objective == pytest.approx(prob.value, rel=1e-7)
    # the primal answer is the one the objective reports, and capacity prices are never negative
    assert np.all(ours.duals >= 0)
    assert float(mt.c[mt.n_z : mt.n_z + mt.n_x] @ ours.x) == pytest.approx(ours.objective, rel=1e-7)
    del v, cap_con
