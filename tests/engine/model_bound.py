"""A proven upper bound on welfare tighter than the LP relaxation, for offline evidence (not used
by the engine): relax the XOR rows of groups whose bids span GPU models with the natural LP's
duals `mu`, and the market splits into one MIP per model (that model's placements, each z priced
at its group's `mu`, XOR rows kept inside the model). For any `mu >= 0`

    welfare(any valid clearing) <= sum(mu) + sum over models of max(model MIP at prices mu)

and every model MIP's dual bound from HiGHS bounds its max, so the sum is a proven bound. With the
LP's duals the per-model LPs add up to the LP bound exactly; what the per-model MIPs prove below
their LPs is what the bound gains.

    python -m tests.engine.model_bound ROUND.json [--seconds S]   # S per model MIP
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any

import numpy as np

from auctions.engine.clearing import _restrict
from auctions.engine.components import components
from auctions.engine.formulation import Market, build_market
from auctions.engine.solve import natural_model, quiet_highs

from .lp_bound import round_arg


def _relaxed(h: Any, n: int) -> None:
    h.changeColsIntegrality(n, np.arange(n, dtype=np.int32), np.zeros(n, dtype=np.uint8))


def model_bound(mk: Market, seconds: float, log: Any = None) -> dict[str, Any]:
    """The bound for one sub-market: {'lp', 'bound', 'mu', 'models': [...]}."""
    nm, _ = natural_model(mk)
    h = quiet_highs()
    nm.pass_to(h)
    _relaxed(h, nm.num_col)
    if nm.num_col > 50_000:
        h.setOptionValue("solver", "ipm")
    h.run()
    lp = -float(h.getInfo().objective_function_value)
    mu = np.maximum(-np.asarray(h.getSolution().row_dual)[: mk.n_groups], 0.0)
    models_of = np.zeros((mk.n_groups, len(mk.models)), dtype=bool)
    models_of[mk.b_group[mk.p_bid], mk.p_model] = True
    mu = np.where(models_of.sum(axis=1) > 1, mu, 0.0)  # only groups that span models
    total = float(mu.sum())
    rows = []
    for m, name in enumerate(mk.models):
        keep = mk.p_model == m
        if not keep.any():
            continue
        sub, _ = _restrict(mk, keep)
        snm, _ = natural_model(sub)
        cost = snm.col_cost.copy()
        cost[: sub.n_places] += mu[sub.b_group[sub.p_bid]]
        snm = dataclasses.replace(snm, col_cost=cost)
        hm = quiet_highs()
        hm.setOptionValue("time_limit", float(seconds))
        hm.setOptionValue("random_seed", 0)
        hm.setOptionValue("mip_rel_gap", 1e-6)
        snm.pass_to(hm)
        t0 = time.perf_counter()
        hm.run()
        info = hm.getInfo()
        ub = max(-float(info.mip_dual_bound), 0.0)  # choosing nothing is feasible: max >= 0
        total += ub
        row = {"model": name, "places": sub.n_places, "dual_bound": ub, "status": hm.getModelStatus().name}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        if log is not None:
            log.write(f"{row}\n")
            log.flush()
    return {"lp": lp, "bound": total, "mu": float(mu.sum()), "models": rows}


def main(argv: list[str] | None = None) -> int:
    rnd, seconds = round_arg(__doc__.splitlines()[0], argv, 150.0)
    lp = bound = 0.0
    for part in components(rnd):
        if not part.offers:
            continue
        out = model_bound(build_market(part), seconds or 150.0, log=sys.stdout)
        lp += out["lp"]
        bound += out["bound"]
    ratio = bound / lp if lp else 1.0
    sys.stdout.write(
        f"LP bound {lp:.0f}  model-MIP bound {bound:.0f}  ({ratio:.4f} of the LP)"
        f"  load {os.getloadavg()[0]:.2f}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
