"""`gridx bench`: the engine against a greedy pass and against HiGHS alone, same time limit."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .clearing import clear
from .formulation import Market, build_market
from .heuristics import greedy, orders
from .rounds import parse_round


def default_time_limit(n_bids: int) -> float:
    """The targets' time limits (docs/engine.md): 10 s small, 30 s medium, 120 s large, 600 s xlarge."""
    if n_bids <= 50:
        return 10.0
    if n_bids <= 200:
        return 30.0
    if n_bids <= 1000:
        return 120.0
    return 600.0


def greedy_baseline(mk: Market) -> float:
    """The plain greedy of the research notes: bids by total limit value, best margin placement."""
    return greedy(mk, orders(mk)[0]).welfare(mk)


def direct_highs(mk: Market, time_limit: float) -> tuple[float, float, float, int, str]:
    """HiGHS alone (highspy, no cvxpy, no warm start) on the natural formulation: a capacity row per
    offer per slot. Returns (welfare, dual bound, build seconds, non-zeros, status)."""
    import highspy

    t0 = time.perf_counter()
    np_, nk = mk.n_places, mk.n_sources
    n = np_ + nk
    if n == 0:
        return 0.0, 0.0, 0.0, 0, "empty"
    pidx = np.arange(np_)
    kidx = np.arange(nk)
    g = mk.b_group[mk.p_bid]
    rows = [
        g,
        mk.n_groups + pidx,
        mk.n_groups + mk.k_place,
        mk.n_groups + np_ + pidx,
        mk.n_groups + np_ + mk.k_place,
    ]
    cols = [pidx, pidx, np_ + kidx, pidx, np_ + kidx]
    vals = [
        np.ones(np_),
        -mk.b_gpus[mk.p_bid].astype(float),
        np.ones(nk),
        mk.b_min[mk.p_bid].astype(float),
        -np.ones(nk),
    ]
    n_link = mk.n_groups + 2 * np_
    # capacity: one row per offer per slot, every slot a source covers
    dur = mk.p_end[mk.k_place] - mk.p_start[mk.k_place]
    kk = np.repeat(kidx, dur)
    off = np.arange(int(dur.sum())) - np.repeat(np.cumsum(dur) - dur, dur)
    slot = mk.p_start[mk.k_place][kk] + off
    crow = mk.k_offer[kk] * mk.rnd.slots + slot
    rows.append(n_link + crow)
    cols.append(np_ + kk)
    vals.append(np.ones(kk.size))
    n_rows = n_link + mk.o_gpus.size * mk.rnd.slots
    a = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_rows, n))
    upper = np.concatenate([np.ones(mk.n_groups), np.zeros(2 * np_), np.repeat(mk.o_gpus, mk.rnd.slots)])
    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, n_rows
    lp.col_cost_ = -np.concatenate([np.zeros(np_), mk.k_value])
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.concatenate([np.ones(np_), mk.k_ub.astype(float)])
    lp.row_lower_ = np.full(n_rows, -inf)
    lp.row_upper_ = upper.astype(float)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr
    lp.a_matrix_.index_ = a.indices
    lp.a_matrix_.value_ = a.data
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", 1e-4)
    h.passModel(lp)
    build = time.perf_counter() - t0
    h.run()
    info = h.getInfo()
    welfare = -info.objective_function_value if info.primal_solution_status == 2 else 0.0
    return welfare, -info.mip_dual_bound, build, int(a.nnz), h.getModelStatus().name


COLUMNS = [
    "round",
    "bids",
    "offers",
    "columns",
    "nonzeros",
    "build_s",
    "us_per_nz",
    "solve_s",
    "wall_s",
    "status",
    "welfare",
    "bound",
    "gap",
    "greedy",
    "greedy_vs_bound",
    "highs_welfare",
    "highs_bound",
    "highs_status",
    "time_limit",
]


def bench_round(path: Path, *, time_limit: float | None, gap: float, direct: bool) -> dict[str, Any]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    rnd, problems = parse_round(doc)
    if rnd is None:
        return {"round": path.name, "status": "infeasible_input: " + "; ".join(problems[:3])}
    tl = time_limit if time_limit is not None else default_time_limit(len(rnd.bids))
    t0 = time.perf_counter()
    res = clear(doc, time_limit=tl, gap=gap)
    wall = time.perf_counter() - t0
    st = res["stats"]
    mk = build_market(rnd)
    greedy_w = math.floor(greedy_baseline(mk) + 1e-6)
    bound = int(res["bound_cents"])
    row: dict[str, Any] = {
        "round": path.stem,
        "bids": len(rnd.bids),
        "offers": len(rnd.offers),
        "columns": st.get("columns", 0),
        "nonzeros": st.get("nonzeros", 0),
        "build_s": round(float(st["build_s"]) + float(st.get("compile_s", 0.0)), 3),
        "us_per_nz": round(
            (float(st["build_s"]) + float(st.get("compile_s", 0.0)))
            * 1e6
            / max(int(st.get("nonzeros", 0)), 1),
            2,
        ),
        "solve_s": round(float(st["solve_s"]), 2),
        "wall_s": round(wall, 2),
        "status": res["status"],
        "welfare": res["welfare_cents"],
        "bound": bound,
        "gap": round(1 - res["welfare_cents"] / bound, 5) if bound else 0.0,
        "greedy": greedy_w,
        "greedy_vs_bound": round(greedy_w / bound, 4) if bound else 1.0,
        "time_limit": tl,
    }
    if direct:
        w, b, _build, _nnz, status = direct_highs(mk, tl)
        row.update(highs_welfare=math.floor(w + 1e-6), highs_bound=math.ceil(b - 1e-6), highs_status=status)
    return row


def run_bench(
    files: list[Path], *, time_limit: float | None, gap: float, direct: bool, json_out: str | None
) -> int:
    rows = []
    sys.stdout.write(" | ".join(COLUMNS) + "\n")
    sys.stdout.flush()
    for f in files:
        row = bench_round(f, time_limit=time_limit, gap=gap, direct=direct)
        rows.append(row)
        sys.stdout.write(" | ".join(str(row.get(c, "")) for c in COLUMNS) + "\n")
        sys.stdout.flush()
    if json_out:
        Path(json_out).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0
