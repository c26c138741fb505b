"""The LP relaxation as a guide for the large-round search, solved in a process of its own.

The re-packs of `lns` free each bid of a GPU model with two placements: its award's and one
more. Which one more decides what the re-pack can find. At the Lagrangian's prices a bid's best
placement is a near tie among several for about half of large-31's bids (464 of 854 have another
within 0.1% of their best priced value), so the prices alone pick among them by what amounts to
chance, for each bid apart: many may pick the same cheap capacity. The LP relaxation decides those
ties jointly, as capacity allows: its solution (`z` per placement) is a fractional packing of the
whole market. Measured on large-31 (docs/engine.md, *The LP as a guide*): from one start, the
first re-pack pass gains 1.13M cents with each bid's placement of largest `z` against 0.97M with
its best at the prices, and five passes (later ones drawing each bid's placement with
probability `z`) 1.32M in 46 s against 1.19M in 58 s.

The LP (the flow form with the source bounds of `solve.add_source_bounds`: the convex-hull
relaxation, tighter than the plain LP) takes ~25 s on large-31 with HiGHS's interior point
method, so it runs in a spawned process of its own from the start of the sub-market, beside the
order search and the Lagrangian, which use one core; the search takes its answer when it comes
(`LPGuide.poll`). Its optimum is also a valid bound on every clearing.
"""

from __future__ import annotations

import logging
import multiprocessing
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from .formulation import FloatArray, IntArray, Market, flow_lp
from .solve import add_source_bounds, bare_highs

log = logging.getLogger(__name__)

# A bid counts as placed by the LP when its `z` add up to more than this.
PLACED_Z = 0.01


@dataclass(frozen=True)
class LPSolution:
    z: FloatArray  # per placement, in [0, 1]
    objective: float  # the LP's optimum, cents: a valid bound on every clearing


def solve_guide_lp(mk: Market, seconds: float) -> LPSolution | None:
    """The LP relaxation of `mk` (flow form plus source bounds) by HiGHS's interior point method
    with crossover, in at most `seconds`; None when it does not reach its optimum."""
    lp = flow_lp(mk)
    h = bare_highs()
    for key, val in {
        "solver": "ipm",
        "run_crossover": "on",
        "random_seed": 0,
        "time_limit": max(float(seconds), 0.01),
    }.items():
        h.setOptionValue(key, val)
    lp.pass_to(h)
    add_source_bounds(h, mk)
    h.run()
    if h.getModelStatus().name != "kOptimal":
        return None
    z = np.clip(np.asarray(h.getSolution().col_value[: mk.n_places], dtype=np.float64), 0.0, 1.0)
    return LPSolution(z=z, objective=-float(h.getInfo().objective_function_value))


def _worker(mk: Market, seconds: float, conn: Connection) -> None:
    """The guide process: solve, send the answer (or None), exit."""
    try:
        out = solve_guide_lp(mk, seconds)
    except Exception:  # noqa: BLE001 (any failure only means no guide)
        out = None
    conn.send(out)
    conn.close()


class LPGuide:
    """The LP of `mk` solving in a spawned process, for at most `seconds`. `poll` returns its
    solution once it has arrived (never waits); `close` ends the process whatever its state."""

    def __init__(self, mk: Market, seconds: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe(duplex=False)
        self._proc: Any = ctx.Process(target=_worker, args=(mk, seconds, child), daemon=True)
        self._proc.start()
        child.close()
        self._done = False
        self._out: LPSolution | None = None

    def poll(self) -> LPSolution | None:
        if not self._done and self._conn.poll():
            try:
                self._out = self._conn.recv()
            except (EOFError, OSError):
                self._out = None
            self._done = True
            self.close()
            if self._out is not None:
                log.debug("LP guide: %.0f", self._out.objective)
        return self._out

    def pending(self) -> bool:
        """Whether the LP is still being solved (its answer, or None, has not arrived)."""
        self.poll()
        return not self._done

    def z(self) -> FloatArray | None:
        """The LP's `z` once it has arrived (None before, or when it failed)."""
        sol = self.poll()
        return None if sol is None else sol.z

    def close(self) -> None:
        self._done = True
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.terminate()
            self._proc.join()
            self._proc = None
            self._conn.close()


def guided_tops(mk: Market, z: FloatArray, i: int, fallback: IntArray) -> IntArray:
    """Each bid's placement for re-pack pass `i` from the LP's `z`: the one of largest `z` on
    the first pass, then one drawn with probability proportional to `z` (seeded by `i`). Bids
    the LP does not place (their `z` add up to at most PLACED_Z) keep `fallback`'s."""
    n_b = mk.b_gpus.size
    cz = np.concatenate(([0.0], np.cumsum(z)))
    lo = cz[mk.b_pstart[:-1]]
    zb = cz[mk.b_pstart[1:]] - lo  # each bid's z added up
    b = np.flatnonzero(zb > PLACED_Z)
    out = fallback.copy()
    # (placements are in bid order, so each bid's block of the sorted order is its own)
    largest = np.lexsort((np.arange(mk.n_places), -z, mk.p_bid))[mk.b_pstart[b]]
    if i == 0:
        out[b] = largest
        return out
    u = np.random.default_rng(i).random(n_b)[b]
    pick = np.searchsorted(cz[1:], lo[b] + u * zb[b], side="right")
    pick = np.clip(pick, mk.b_pstart[b], mk.b_pstart[b + 1] - 1)
    # (rounding at the end of a bid's block can land on a placement of z = 0)
    out[b] = np.where(z[pick] > 0, pick, largest)
    return out
