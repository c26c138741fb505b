"""`gridx bench`: the engine against a greedy pass and against HiGHS alone, same time limit."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from .clearing import clear
from .formulation import Market, build_market
from .heuristics import greedy, orders
from .rounds import parse_round
from .solve import natural_model, quiet_highs


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

    t0 = time.perf_counter()
    if mk.n_places + mk.n_sources == 0:
        return 0.0, 0.0, 0.0, 0, "empty"
    model, nnz = natural_model(mk)
    h = quiet_highs()
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", 1e-4)
    model.pass_to(h)
    build = time.perf_counter() - t0
    h.run()
    info = h.getInfo()
    welfare = -info.objective_function_value if info.primal_solution_status == 2 else 0.0
    return welfare, -info.mip_dual_bound, build, nnz, h.getModelStatus().name


# Clearings faster than this are repeated (REPEATS runs in all) and the fastest run is reported.
REPEAT_BELOW_S = 1.0
REPEATS = 5

COLUMNS = [
    "round",
    "bids",
    "offers",
    "columns",
    "nonzeros",
    "build_s",
    "us_per_nz",
    "build_pct",
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
    if wall < REPEAT_BELOW_S:
        # millisecond clearings: one preemption on the shared machine doubles a figure; keep the
        # fastest of a few runs (same result: these rounds are solved to optimality)
        for _ in range(REPEATS - 1):
            t0 = time.perf_counter()
            again = clear(doc, time_limit=tl, gap=gap)
            took = time.perf_counter() - t0
            if took < wall:
                res, wall = again, took
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
        "build_s": round(float(st["build_s"]) + float(st.get("compile_s", 0.0)), 6),
        "us_per_nz": round(
            (float(st["build_s"]) + float(st.get("compile_s", 0.0)))
            * 1e6
            / max(int(st.get("nonzeros", 0)), 1),
            2,
        ),
        # build + compile as a share of the engine's own clearing time (in-process, imports excluded)
        "build_pct": round(
            100 * (float(st["build_s"]) + float(st.get("compile_s", 0.0))) / max(wall, 1e-9), 2
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


def warm_up() -> None:
    """Clear a two-line round once, so that one-time costs of the process (lazy imports, the
    silenced HiGHS banner) are not charged to the first round's build and clearing times."""
    offer = {"id": "o", "team": "s", "cluster": "c", "gpu_model": "m", "gpus": 2, "start_slot": 0}
    bid = {"id": "b", "team": "t", "gpu_models": ["m"], "gpus": 1, "min_gpus": 1, "duration_slots": 1}
    clear(
        {
            "format": "gridx.round/v1",
            "round": "warm-up",
            "start": "2026-01-01T00:00:00Z",
            "slot_minutes": 60,
            "slots": 2,
            "currency": "usd",
            "offers": [{**offer, "end_slot": 2, "reserve_cents_per_gpu_hour": 1}],
            "bids": [
                {
                    **bid,
                    "earliest_start_slot": 0,
                    "latest_end_slot": 2,
                    "colocate": False,
                    "limit_cents_per_gpu_hour": 5,
                    "xor_group": None,
                }
            ],
        }
    )


def run_bench(
    files: list[Path], *, time_limit: float | None, gap: float, direct: bool, json_out: str | None
) -> int:
    rows = []
    warm_up()
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
