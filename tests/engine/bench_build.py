"""Model build + compile time of the engine against the builders it replaced, in the same process.

    .venv/bin/python -m tests.engine.bench_build [ROUND.json ...] [--reps N]

Per round (default: every sample round) and per sub-market, exactly the building steps
`clear_component` takes. "old" runs the builders of 2026-11-26: the per-bid `build_market` and
the COO-assembled matrices of `reference_build.py`, then, for sub-markets that got the full MIP,
the natural model as a `HighsLp` loaded into a fresh HiGHS and the LP data for cvxpy's interface
(`test_lp.qp_data`, what compile_s counted then). "new" the engine's (`new_steps`): a sub-market
solved whole gets the natural form only, loaded once into the thread's HiGHS instance, with the
MIP's and then the LP's options (`solve.WholeNatural`); a large one the flow form; offerless
parts nothing. The two alternate within each repetition, so both see the same machine load.
Prints the minimum and the median over the repetitions, the non-zeros of each (old: the flow
form, what `gridx bench` reported then; new: the model the engine builds, what it reports now),
microseconds per non-zero, the ratio of times new/old, and the load average. Not a test:
timings are measured by commands, never asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from auctions.engine.clearing import FULL_MIP_COLUMNS, NATURAL_MAX_NNZ, _natural_nnz, solved_whole
from auctions.engine.components import components
from auctions.engine.formulation import Market, build_market, flow_lp
from auctions.engine.rounds import Bid, Round, parse_round
from auctions.engine.solve import WholeNatural, quiet_highs

from .reference_build import build_market_per_bid, build_matrices_coo, natural_model_coo
from .test_lp import qp_data

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "rounds"


def steps(
    part: Round,
    market: Callable[[Round], Market],
    matrices: Callable[[Market], Any],
    natural: Callable[[Market], Any],
    lp: Callable[[Any], Any],
    *,
    empty_too: bool = False,
) -> int:
    """Build one sub-market as `clear_component` does; returns the flow-form non-zeros. The old
    engine built the matrices of sub-markets with nothing to place too (`empty_too`)."""
    mk = market(part)
    if not mk.n_places and not empty_too:
        return 0
    mt = matrices(mk)
    if mk.n_places and mt.c.size <= FULL_MIP_COLUMNS:
        if _natural_nnz(mk) <= NATURAL_MAX_NNZ:
            natural(mk)
        lp(mt)
    return int(mt.nnz)


def old_parts(parts: list[Round]) -> list[Round]:
    """The sub-markets of the old `components`: offerless bids one part per XOR group."""
    out = [p for p in parts if p.offers]
    for p in parts:
        if p.offers:
            continue
        groups: dict[str, list[Bid]] = {}
        for b in p.bids:
            groups.setdefault(b.xor_group or f"bid:{b.id}", []).append(b)
        out.extend(replace(p, bids=tuple(bs)) for bs in groups.values())
    return out


def old_natural(mk: Market) -> None:
    """The natural model as a `HighsLp`, loaded into a fresh HiGHS (what compile_s timed)."""
    quiet_highs().passModel(natural_model_coo(mk)[0])


def old_build(parts: list[Round]) -> int:
    return sum(
        steps(p, build_market_per_bid, build_matrices_coo, old_natural, qp_data, empty_too=True)
        for p in parts
    )


def new_steps(part: Round) -> int:
    """Build one sub-market as `clear_component` does now; returns the non-zeros of the model it
    builds (what `gridx bench` reports): a sub-market solved whole gets only the natural form,
    loaded once into the thread's HiGHS instance with the MIP's options, then the LP's options
    (`WholeNatural`); a large one the flow form. Offerless parts build nothing."""
    if not part.offers:
        return 0
    mk = build_market(part)
    if not mk.n_places:
        return 0
    if solved_whole(mk, "HIGHS"):
        wn = WholeNatural(mk, time_limit=10.0, gap=1e-4)
        wn.lp_options(10.0)
        wn.h.clearModel()
        return wn.nnz
    return flow_lp(mk).nnz


def new_build(parts: list[Round]) -> int:
    return sum(new_steps(p) for p in parts)


def load() -> str:
    """The 1, 5 and 15 minute load averages (the machine is shared: read the figures with them)."""
    avg = Path("/proc/loadavg")
    return " ".join(avg.read_text().split()[:3]) if avg.exists() else "?"


def bench(path: Path, reps: int) -> dict[str, Any]:
    rnd, problems = parse_round(json.loads(path.read_text(encoding="utf-8")))
    assert rnd is not None, problems
    parts = components(rnd)
    parts_before = old_parts(parts)
    old_t: list[float] = []
    new_t: list[float] = []
    nnz = old_nnz = 0
    for _ in range(reps):
        t0 = time.perf_counter()
        nnz = new_build(parts)
        t1 = time.perf_counter()
        old_nnz = old_build(parts_before)
        t2 = time.perf_counter()
        new_t.append(t1 - t0)
        old_t.append(t2 - t1)
    nz, old_nz = max(nnz, 1), max(old_nnz, 1)
    return {
        "round": path.stem,
        "parts": f"{len(parts_before)}->{len(parts)}",
        "old_nonzeros": old_nnz,
        "nonzeros": nnz,
        "old_min_ms": round(min(old_t) * 1e3, 3),
        "new_min_ms": round(min(new_t) * 1e3, 3),
        "old_med_ms": round(statistics.median(old_t) * 1e3, 3),
        "new_med_ms": round(statistics.median(new_t) * 1e3, 3),
        "old_us_per_nz": round(min(old_t) * 1e6 / old_nz, 2),
        "new_us_per_nz": round(min(new_t) * 1e6 / nz, 2),
        "new_over_old": round(min(new_t) / min(old_t), 3),
        "reps": reps,
        "load": load(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rounds", nargs="*", type=Path)
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default: by round size)")
    args = ap.parse_args(argv)
    files = args.rounds or sorted(SAMPLES.glob("*.json"), key=lambda p: p.stat().st_size)
    cols = None
    for f in files:
        size = f.stat().st_size
        reps = args.reps or (200 if size < 50_000 else 30 if size < 200_000 else 5 if size < 1_000_000 else 1)
        row = bench(f, reps)
        if cols is None:
            cols = list(row)
            sys.stdout.write(" | ".join(cols) + "\n")
        sys.stdout.write(" | ".join(str(row[c]) for c in cols) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
