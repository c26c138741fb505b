"""How far the large-round search goes with a longer deadline, for offline evidence (not used by
the engine or the tests): the engine's own start (best greedy, the Lagrangian bound and the
greedy passes its prices guide, `clearing.large_start`), then `lns.improve` until the deadline.
Prints every improving move as (seconds into the search, welfare), and at the end the welfare,
the number of improving moves and the welfare per GPU model. docs/engine-experiments.md has what
it measured on large-31 (96.69% of the LP bound after 1,200 s).

    python -m tests.engine.search_run ROUND.json [--seconds S]   # S of search (default 120)
"""

from __future__ import annotations

import logging
import sys
import time

import numpy as np

from auctions.engine import lns
from auctions.engine.clearing import _restrict, _valid, large_start
from auctions.engine.components import components
from auctions.engine.formulation import build_market
from auctions.engine.heuristics import best_greedy

from .lp_bound import round_arg


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class _Moves(logging.Handler):
    """Collects the welfare after each improving move from the search's debug log."""

    def __init__(self, t0: float) -> None:
        super().__init__(logging.DEBUG)
        self.t0 = t0
        self.points: list[tuple[float, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("LNS:") and isinstance(record.args, tuple):
            self.points.append((time.perf_counter() - self.t0, float(record.args[2])))


def main(argv: list[str] | None = None) -> int:
    rnd, seconds = round_arg(__doc__.splitlines()[0], argv, 120.0)
    budget = float(seconds or 120.0)
    part = max(components(rnd), key=lambda p: (len(p.bids) * len(p.offers), len(p.bids)))
    mk = build_market(part)
    t = time.perf_counter()
    start, lag = large_start(mk, best_greedy(mk), seconds=0.3 * budget)
    _out(
        f"{rnd.round}: largest sub-market {len(part.bids)} bids; start {start.welfare(mk):,.0f} "
        f"in {time.perf_counter() - t:.1f} s; Lagrangian bound {lag.bound:,.0f}"
    )
    t0 = time.perf_counter()
    moves = _Moves(t0)
    logger = logging.getLogger(lns.__name__)
    logger.setLevel(logging.DEBUG)
    logger.addHandler(moves)
    try:
        best = lns.improve(mk, start, deadline=t0 + budget, gap=1e-4, valid=_valid, restrict=_restrict)
    finally:
        logger.removeHandler(moves)
    for at, w in moves.points:
        _out(f"  {at:8.1f} s  {w:,.0f}")
    per_model = np.bincount(mk.p_model[mk.k_place], weights=best.x * mk.k_value, minlength=len(mk.models))
    took = time.perf_counter() - t0
    _out(f"final {best.welfare(mk):,.0f} after {took:.0f} s, {len(moves.points)} improving moves")
    for name, w in zip(mk.models, per_model.tolist(), strict=True):
        _out(f"  {name}: {w:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
