"""Solving the model: with HiGHS, the full MIP on the natural formulation and the LP relaxation go
to highspy directly as arrays (`solve_mip_natural`, `solve_lp`); the flow-form MIP and any other
solver go through cvxpy.

The cvxpy model is a handful of vector constraints over sparse matrices (STYLE.md rule 10). With HiGHS the
MIP is warm-started from a heuristic allocation: cvxpy only reuses a previous HiGHS solution from
the problem's solver cache, so we put our allocation there in cvxpy's column order (z, x, y: the
order the variables are created and first used in), which the tests check.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .formulation import FloatArray, FlowLP, IntArray, Market, Matrices, link_entries, pass_csc

if TYPE_CHECKING:
    import cvxpy as cp

log = logging.getLogger(__name__)

# Above this many columns the LP uses HiGHS's interior point method (2x faster on large-31).
IPM_COLUMNS = 50_000
VERBOSE = False


class SolverFailed(RuntimeError):
    """The solver ended without a usable answer (status in the message)."""


@dataclass(frozen=True)
class LPResult:
    """LP relaxation: objective (an upper bound when optimal), source values, capacity duals."""

    optimal: bool
    objective: float
    x: FloatArray
    z: FloatArray
    duals: FloatArray  # per checkpoint row, cents per GPU per slot (>= 0)
    seconds: float
    compile_s: float


@dataclass(frozen=True)
class MIPResult:
    """MIP answer: integer source values, whether the gap was proven, and the dual bound."""

    optimal: bool
    x: IntArray
    dual_bound: float | None
    seconds: float
    compile_s: float


def _problem(mt: Matrices, integer: bool) -> tuple[cp.Problem, cp.Variable, cp.Variable | None, Any]:
    import cvxpy as cp

    nzx = mt.n_z + mt.n_x
    a_link = mt.a_link.tocsc()
    a_flow = mt.a_flow.tocsc()
    v = cp.Variable(nzx, integer=integer, bounds=[mt.lb[:nzx], mt.ub[:nzx]])
    cons: list[Any] = [a_link[:, :nzx] @ v <= mt.b_link]
    y: cp.Variable | None = None
    cap_con: Any = None
    if mt.n_y:
        y = cp.Variable(mt.n_y)
        cons.append(a_flow[:, :nzx] @ v + a_flow[:, nzx:] @ y == 0)
        cap_con = y <= mt.cap
        cons.append(cap_con)
    prob = cp.Problem(cp.Maximize(mt.c[:nzx] @ v), cons)
    return prob, v, y, cap_con


def _highs_opts(solver: str, time_limit: float | None, extra: dict[str, Any]) -> dict[str, Any]:
    if solver.upper() != "HIGHS":
        return {}
    silence_highs_banner()
    opts: dict[str, Any] = {"random_seed": 0, "output_flag": False, "log_to_console": False, **extra}
    if time_limit is not None:
        opts["time_limit"] = max(float(time_limit), 0.01)
    return opts


def _lp_result(
    mt: Matrices | FlowLP,
    optimal: bool,
    objective: float,
    val: FloatArray,
    duals: FloatArray,
    seconds: float,
    compile_s: float,
) -> LPResult:
    if not optimal:
        return LPResult(
            False, float("inf"), np.zeros(mt.n_x), np.zeros(mt.n_z), np.zeros(mt.n_y), seconds, compile_s
        )
    return LPResult(True, objective, val[mt.n_z : mt.n_z + mt.n_x], val[: mt.n_z], duals, seconds, compile_s)


def lp_of_matrices(mt: Matrices) -> FlowLP:
    """The HiGHS arrays of the LP of `Matrices`, stacked as cvxpy's HiGHS interface stacks them
    (`A = [a_flow; a_link]` by `scipy.sparse.vstack`): for callers that hold `Matrices` (and the
    tests' check that `flow_lp` builds exactly this)."""
    import scipy.sparse as sp

    a = sp.vstack([mt.a_flow, mt.a_link]).tocsc()
    nr, n_link = int(mt.a_flow.shape[0]), int(mt.a_link.shape[0])
    return FlowLP(
        mk=None,
        c=mt.c,
        col_lower=mt.lb.copy(),
        col_upper=np.concatenate([mt.ub[: mt.n_z + mt.n_x], mt.cap]),
        row_lower=np.concatenate([np.zeros(nr), np.full(n_link, -np.inf)]),
        row_upper=np.concatenate([np.zeros(nr), mt.b_link.astype(float)]),
        a_start=a.indptr.astype(np.int32),
        a_index=a.indices.astype(np.int32),
        a_value=a.data,
        n_z=mt.n_z,
        n_x=mt.n_x,
        n_y=mt.n_y,
    )


def solve_lp(
    mt: Matrices | FlowLP, *, solver: str, time_limit: float | None, source_bounds: bool = True
) -> LPResult:
    """Solve the LP relaxation; the duals of `y <= cap` (column bounds of y) are the capacity
    prices. With HiGHS and a `FlowLP` built from a Market, the LP has the source bounds of
    `add_source_bounds` too (unless `source_bounds` is False), as a sub-market solved whole has.

    HiGHS gets the arrays of `flow_lp` through highspy's array `passModel`, the same LP that
    cvxpy's HiGHS interface loaded before (`tests/engine/test_lp.py` checks objective, primal and
    duals are identical); any other solver name goes through a `cp.Problem`. `compile_s` counts
    everything from the arrays to a HiGHS instance holding the model, as for the MIP."""
    import time

    if solver.upper() == "HIGHS":
        t0 = time.perf_counter()
        lp = mt if isinstance(mt, FlowLP) else lp_of_matrices(mt)
        h = bare_highs()
        opts = _highs_opts(solver, time_limit, {"solver": "ipm"} if lp.num_col > IPM_COLUMNS else {})
        for key, val in opts.items():
            h.setOptionValue(key, val)
        lp.pass_to(h)
        if source_bounds and lp.mk is not None:
            add_source_bounds(h, lp.mk)
        compile_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        try:
            h.run()
        except ValueError as exc:  # pragma: no cover - depends on the solver
            log.warning("LP solver failed: %s", exc)
            return _lp_result(lp, False, 0.0, np.zeros(0), np.zeros(0), time.perf_counter() - t1, compile_s)
        ok = h.getModelStatus().name == "kOptimal"
        sol = h.getSolution()
        objective = -float(h.getInfo().objective_function_value)
        seconds = time.perf_counter() - t1
        val = np.asarray(sol.col_value, dtype=float)
        duals = np.zeros(lp.n_y)
        if ok and lp.n_y:
            duals = np.maximum(-np.asarray(sol.col_dual, dtype=float)[lp.n_z + lp.n_x :], 0.0)
        return _lp_result(lp, ok, objective, val, duals, seconds, compile_s)
    import cvxpy as cp  # only here and for the flow-form MIP: ~1 s of imports a HiGHS run skips

    t0 = time.perf_counter()
    mats = mt.matrices() if isinstance(mt, FlowLP) else mt
    prob, v, _, cap_con = _problem(mats, integer=False)
    prob.get_problem_data(solver)  # compile once; timed separately from the solve
    compile_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    try:
        prob.solve(solver=solver)  # type: ignore[no-untyped-call]
    except cp.error.SolverError as exc:  # pragma: no cover - depends on the solver
        log.warning("LP solver failed: %s", exc)
        return _lp_result(mats, False, 0.0, np.zeros(0), np.zeros(0), time.perf_counter() - t1, compile_s)
    seconds = time.perf_counter() - t1
    ok = prob.status == cp.OPTIMAL and v.value is not None
    duals = np.zeros(mats.n_y)
    if ok and cap_con is not None and cap_con.dual_value is not None:
        duals = np.maximum(np.asarray(cap_con.dual_value, dtype=float), 0.0)
    val = np.asarray(v.value, dtype=float) if ok else np.zeros(0)
    return _lp_result(mats, ok, float(prob.value) if ok else 0.0, val, duals, seconds, compile_s)


def usage_of(mk: Market, x: IntArray) -> FloatArray:
    """Usage of every checkpoint row (the y part of a solution)."""
    stride = mk.rnd.slots + 1
    r_key = mk.r_offer * stride + mk.r_slot
    y = np.zeros(mk.r_offer.size)
    for k in np.flatnonzero(x).tolist():
        base = int(mk.k_offer[k]) * stride
        p = int(mk.k_place[k])
        lo = np.searchsorted(r_key, base + mk.p_start[p])
        hi = np.searchsorted(r_key, base + mk.p_end[p])
        y[lo:hi] += x[k]
    return y


def solve_mip(
    mk: Market,
    mt: Matrices | FlowLP,
    *,
    solver: str,
    time_limit: float | None,
    gap: float,
    warm: IntArray | None,
) -> MIPResult:
    """Solve the MIP on the flow form through cvxpy; with HiGHS start from `warm` (source values)
    and read the dual bound. Given a `FlowLP`, its `Matrices` are built here (counted in
    `compile_s`)."""
    import time

    import cvxpy as cp
    import highspy

    tc = time.perf_counter()
    if isinstance(mt, FlowLP):
        mt = mt.matrices()
    prob, v, y, _ = _problem(mt, integer=True)
    prob.get_problem_data(solver)
    compile_s = time.perf_counter() - tc
    opts = _highs_opts(solver, time_limit, {"mip_rel_gap": gap})
    if solver.upper() == "HIGHS" and warm is not None:
        z = np.zeros(mt.n_z)
        ks = np.flatnonzero(warm)
        z[mk.k_place[ks]] = 1.0
        col = np.concatenate([z, warm.astype(float), usage_of(mk, warm)])
        sol = highspy.HighsSolution()
        sol.col_value = col.tolist()
        sol.value_valid = True
        # cvxpy hands a cached solution of the same problem to HiGHS's setSolution.
        prob._solver_cache = {"HIGHS": (None, None, {"model_status": "kOptimal", "solution": sol})}
    t1 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # a time-limited MIP is "inaccurate" to cvxpy; we check the answer ourselves
            warnings.simplefilter("ignore", UserWarning)
            prob.solve(solver=solver, warm_start=warm is not None, verbose=VERBOSE, **opts)  # type: ignore[no-untyped-call]
    except cp.error.SolverError as exc:
        raise SolverFailed(str(exc)) from exc
    seconds = time.perf_counter() - t1
    if v.value is None:
        raise SolverFailed(f"no solution (status {prob.status})")
    val = np.rint(np.asarray(v.value, dtype=float)).astype(np.int64)
    dual: float | None = None
    stats = prob.solver_stats.extra_stats if prob.solver_stats is not None else None
    if stats is not None and hasattr(stats, "mip_dual_bound"):
        dual = -float(stats.mip_dual_bound)
    del y
    return MIPResult(prob.status == cp.OPTIMAL, val[mt.n_z :], dual, seconds, compile_s)


@dataclass(frozen=True)
class NaturalModel:
    """The natural formulation as the arrays HiGHS takes: minimise `col_cost v` subject to
    `row_lower <= A v <= row_upper`, `col_lower <= v <= col_upper`, every column integer; A in
    CSC (`a_start`, `a_index`, `a_value`)."""

    col_cost: FloatArray
    col_lower: FloatArray
    col_upper: FloatArray
    row_lower: FloatArray
    row_upper: FloatArray
    a_start: npt.NDArray[np.int32]
    a_index: npt.NDArray[np.int32]
    a_value: FloatArray

    @property
    def num_col(self) -> int:
        return int(self.col_cost.size)

    @property
    def num_row(self) -> int:
        return int(self.row_lower.size)

    @property
    def nnz(self) -> int:
        return int(self.a_index.size)

    def pass_to(self, h: Any) -> None:
        """Load the model into `h` (a `highspy.Highs`), every column integer (`pass_csc`)."""
        pass_csc(
            h,
            cost=self.col_cost,
            col_lower=self.col_lower,
            col_upper=self.col_upper,
            row_lower=self.row_lower,
            row_upper=self.row_upper,
            a_start=self.a_start,
            a_index=self.a_index,
            a_value=self.a_value,
            integer=True,
        )


def natural_model(mk: Market, cap: IntArray | None = None) -> tuple[NaturalModel, int]:
    """The natural formulation (columns z then x, a capacity row per offer per slot,
    `cap[offer, slot]` GPUs when given, else the offer's); returns it and its number of
    non-zeros. Written column by column in HiGHS's index type: x[k]'s capacity entries, one per
    slot it covers, follow its two link entries (`formulation.link_entries`)."""
    np_, nk, ng, slots = mk.n_places, mk.n_sources, mk.n_groups, mk.rnd.slots
    n_link = ng + 2 * np_
    n = np_ + nk
    k_start = mk.p_start[mk.k_place]
    counts = np.empty(n, dtype=np.int32)
    counts[:np_] = 3
    np.add(mk.p_end[mk.k_place] - k_start, 2, out=counts[np_:])
    # HiGHS's index type (HighsInt) is 32 bits in highspy's builds
    a_start = np.zeros(n + 1, dtype=np.int32)
    np.add.accumulate(counts, out=a_start[1:])
    total = int(a_start[-1])
    ind = np.empty(total, dtype=np.int32)
    dat = np.ones(total)
    x_at = a_start[np_:n]
    # x[k]'s entries at x_at[k] + j hold capacity rows n_link + offer x slots + start + j - 2 for
    # j >= 2 (one per slot it covers); the two link entries (j = 0, 1) are written over below
    z3 = 3 * np_
    shift = mk.k_offer * slots + k_start - x_at + (n_link - 2)
    ind[z3:] = np.arange(z3, total) + shift.repeat(counts[np_:])
    link_entries(mk, ind, dat, x_at, 0)
    n_rows = n_link + mk.o_gpus.size * slots
    col_cost = np.full(n, -0.0)
    np.negative(mk.k_value, out=col_cost[np_:])
    col_upper = np.ones(n)
    col_upper[np_:] = mk.k_ub
    row_upper = np.zeros(n_rows)
    row_upper[:ng] = 1.0
    row_upper[n_link:] = mk.o_gpus.repeat(slots) if cap is None else np.asarray(cap).ravel()
    model = NaturalModel(
        col_cost=col_cost,
        col_lower=np.zeros(n),
        col_upper=col_upper,
        row_lower=np.full(n_rows, -np.inf),
        row_upper=row_upper,
        a_start=a_start,
        a_index=ind,
        a_value=dat,
    )
    return model, total


def source_room(mk: Market, cap: IntArray) -> IntArray:
    """The GPUs each source could draw from `cap[offer, slot]` over its whole window (its
    minimum there): one gather of every (source, slot) pair, as many as the natural form's
    capacity entries, and a segmented minimum."""
    nk = mk.n_sources
    if nk == 0:
        return np.zeros(0, dtype=np.int64)
    s0 = mk.p_start[mk.k_place]
    dur = mk.p_end[mk.k_place] - s0
    first = np.zeros(nk, dtype=np.int64)
    np.cumsum(dur[:-1], out=first[1:])
    flat = np.arange(int(first[-1] + dur[-1])) + np.repeat(mk.k_offer * mk.rnd.slots + s0 - first, dur)
    room: IntArray = np.minimum.reduceat(np.asarray(cap).ravel()[flat], first)
    return room


def add_source_bounds(h: Any, mk: Market, cap: IntArray | None = None) -> int:
    """Add `x[k] - ub[k] z[p] <= 0` to the model loaded in `h` (the natural or the flow form: both
    start with the columns z, then x) for every source whose `ub[k]` (the GPUs it can give) is
    below its bid's `gpus`; elsewhere the link row `sum x <= gpus z` implies it. With `cap` (the
    capacity left to a sub-MIP, offers x slots) `ub[k]` is also at most what its offer has left
    over its window (`source_room`). Returns the number of rows added, after the model's own.

    Every valid clearing satisfies these rows, so the LP keeps its bound, but without them a
    fractional `z[p]` may draw a small offer's whole capacity for a fraction of the placement.
    With them each bid's choices (capacity aside) have an integral LP description, so the LP's
    capacity duals are convex-hull prices: exactly the multipliers at which the Lagrangian of
    `lagrange.py` (capacity priced, each bid's choice exact) attains the LP bound, as they are on
    large sub-markets (*Pricing* in docs/engine.md; `tests/engine/test_whole.py`). In the
    search's sub-MIPs, where most offers are partly taken by the fixed awards, the rows with
    `cap` close HiGHS's proofs sooner (docs/engine.md, *Source bounds in the sub-MIPs*)."""
    ub = mk.k_ub if cap is None else np.minimum(mk.k_ub, np.maximum(source_room(mk, cap), 0))
    ks = np.flatnonzero(ub < mk.b_gpus[mk.p_bid[mk.k_place]])
    n = int(ks.size)
    if n:
        index = np.empty(2 * n, dtype=np.int32)
        index[0::2] = mk.k_place[ks]
        index[1::2] = mk.n_places + ks
        value = np.ones(2 * n)
        value[0::2] = -ub[ks]
        start = np.arange(0, 2 * n, 2, dtype=np.int32)
        h.addRows(n, np.full(n, -np.inf), np.zeros(n), 2 * n, start, index, value)
    return n


_BANNER_DONE = False


def silence_highs_banner() -> None:
    """HiGHS prints its banner ("Running HiGHS ...") on stdout the first time a `highspy.Highs` is
    made in a process, whatever the options (cvxpy makes one too). Make that first one here with
    file descriptor 1 pointed at /dev/null, so that the engine never writes to stdout."""
    global _BANNER_DONE
    if _BANNER_DONE:
        return
    import ctypes
    import os
    import sys

    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        highspy.Highs()  # type: ignore[no-untyped-call]
        ctypes.CDLL(None).fflush(None)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)
    _BANNER_DONE = True


def quiet_highs() -> Any:
    """A `highspy.Highs` that never writes to stdout (no banner, no log)."""
    import highspy

    silence_highs_banner()
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", False)
    h.setOptionValue("log_to_console", False)
    return h


def bare_highs() -> Any:
    """A quiet HiGHS instance of highspy's core class (`_Highs`, which highspy exports):
    the same solver as `highspy.Highs` without its Python callback machinery, whose set-up (a
    dozen callback objects and the C++ callback hook) is ~10 us of the ~40 us an instance costs.
    For the full MIP and the LP, which use no callbacks."""
    from highspy._core import _Highs

    silence_highs_banner()
    h = _Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("log_to_console", False)
    return h


@dataclass(frozen=True)
class Handover:
    """When a full MIP gives its time to the search (`clearing.clear_component`): once it has run
    `after_s` seconds, HiGHS is interrupted as soon as its gap, against the better of its incumbent
    and `floor` (the welfare the caller already holds), is above `max_gap`."""

    after_s: float
    max_gap: float
    floor: float

    def callback(self) -> Callable[[Any], None]:
        def check(e: Any) -> None:
            out = e.data_out
            if out.running_time < self.after_s:
                return
            dual = -float(out.mip_dual_bound)
            have = max(-float(out.mip_primal_bound), self.floor)
            if dual - have > self.max_gap * max(abs(dual), 1.0):
                e.interrupt()

        return check


class WholeNatural:
    """One HiGHS instance holding the natural model of a sub-market solved whole: the MIP, then
    its LP relaxation (HiGHS's `solve_relaxation`), whose duals are the capacity prices. The
    natural and the flow form have the same LP (same feasible awards), so this LP's bound equals
    `solve_lp`'s on `flow_lp`, and its duals, summed per checkpoint interval, are an optimal dual
    of the flow LP (*Solving* in docs/engine.md; `tests/engine/test_whole.py`). One model, one
    instance, no flow-form arrays: what the build of a small round costs is this model (`nnz`),
    loaded once."""

    def __init__(
        self,
        mk: Market,
        *,
        time_limit: float | None,
        gap: float,
        handover: Handover | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        import time

        t0 = time.perf_counter()
        self.mk = mk
        model, self.nnz = natural_model(mk)
        self.num_col = model.num_col
        # a handover needs HiGHS's callbacks, which the bare reused instance lacks; a new instance
        # also starts its run clock at 0, the clock the callback reads
        if handover is None:
            h = reused_highs()
        else:
            h = quiet_highs()
            h.cbMipInterrupt.subscribe(handover.callback())
        self.h = load_natural_mip(h, model, time_limit=time_limit, gap=gap, options=options)
        self.compile_s = time.perf_counter() - t0

    def mip(self) -> MIPResult:
        return run_natural_mip(self.h, self.mk, self.compile_s)

    def interrupted(self) -> bool:
        """Whether the handover stopped the MIP (HiGHS's model status after a callback's interrupt)."""
        return bool(self.h.getModelStatus().name == "kInterrupt")

    def release(self) -> None:
        """Drop the model (a sub-market that needs no LP from this instance)."""
        self.h.clearModel()

    def lp_options(self, time_limit: float | None) -> None:
        """Turn the loaded MIP into its LP relaxation: HiGHS's option, and the source bounds of
        `add_source_bounds` (rows after the capacity rows; the MIP ran without them)."""
        h = self.h
        h.setOptionValue("solve_relaxation", True)
        add_source_bounds(h, self.mk)
        if self.num_col > IPM_COLUMNS:
            h.setOptionValue("solver", "ipm")
        if time_limit is not None:
            # HiGHS's run clock counts every run of an instance, and an LP's time limit is read
            # against it (a MIP's from its own start): the LP gets `time_limit` more
            h.setOptionValue("time_limit", h.getRunTime() + max(float(time_limit), 0.01))

    def lp(self, *, time_limit: float | None) -> LPResult:
        """The LP relaxation in the same instance; duals per checkpoint row (`mk.r_offer` order)."""
        import time

        h, mk = self.h, self.mk
        t0 = time.perf_counter()
        self.lp_options(time_limit)
        compile_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        h.run()
        ok = h.getModelStatus().name == "kOptimal"
        seconds = time.perf_counter() - t1
        if not ok:
            h.clearModel()
            e = np.zeros(0)
            return LPResult(False, float("inf"), e, e, e, seconds, compile_s)
        sol = h.getSolution()
        objective = -float(h.getInfo().objective_function_value)
        val = np.asarray(sol.col_value, dtype=float)
        slots = mk.rnd.slots
        n_link = mk.n_groups + 2 * mk.n_places
        # capacity rows, offer by slot; prefix sums per offer so that a checkpoint's dual is the
        # sum over its interval [its slot, the offer's next checkpoint or the horizon's end)
        # (the source bounds' rows follow the capacity rows: not read)
        cap_dual = -np.asarray(sol.row_dual, dtype=float)[n_link : n_link + mk.o_gpus.size * slots]
        rd = np.maximum(cap_dual, 0.0).reshape(-1, slots)
        pre = np.zeros((rd.shape[0], slots + 1))
        np.add.accumulate(rd, axis=1, out=pre[:, 1:])
        nr = mk.r_offer.size
        nxt = np.full(nr, slots, dtype=np.int64)
        if nr > 1:
            same = mk.r_offer[1:] == mk.r_offer[:-1]
            nxt[:-1][same] = mk.r_slot[1:][same]
        duals = pre[mk.r_offer, nxt] - pre[mk.r_offer, mk.r_slot]
        h.clearModel()  # the instance is kept for the next sub-market: keep it small
        return LPResult(True, objective, val[mk.n_places :], val[: mk.n_places], duals, seconds, compile_s)


_REUSED = threading.local()


def reused_highs() -> Any:
    """This thread's `bare_highs` instance, options back to HiGHS's defaults (quiet): a new
    instance is ~30 us (~50 in a clearing), a tenth of a tiny round's whole model. For
    `WholeNatural` only, which loads its model with `passModel` (dropping the previous model,
    solution and basis) and releases it after. HiGHS's run clock counts every run of the
    instance: a MIP's `time_limit` is measured from its own start, an LP's against that clock
    (`tests/engine/test_whole.py` pins both)."""
    h = getattr(_REUSED, "h", None)
    if h is None:
        h = _REUSED.h = bare_highs()
    else:
        h.resetOptions()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("log_to_console", False)
    return h


def solve_mip_natural(
    mk: Market,
    *,
    time_limit: float | None,
    gap: float,
    warm: IntArray | None,
    options: dict[str, Any] | None = None,
    cap: IntArray | None = None,
    source_bounds: bool = False,
) -> MIPResult:
    """The MIP on the natural formulation through highspy directly (no cvxpy), optionally started
    from `warm` (source values), with `add_source_bounds` if `source_bounds`. On medium rounds
    HiGHS searches this form better than the flow form (medium-21: 99.97% vs 99.2% of the
    optimum in 30 s)."""
    import time

    import highspy

    t0 = time.perf_counter()
    model, _ = natural_model(mk, cap)
    h = load_natural_mip(bare_highs(), model, time_limit=time_limit, gap=gap, options=options)
    if source_bounds:
        add_source_bounds(h, mk, cap)
    if warm is not None:
        z = np.zeros(mk.n_places)
        z[mk.k_place[np.flatnonzero(warm)]] = 1.0
        sol = highspy.HighsSolution()
        sol.col_value = np.concatenate([z, warm.astype(float)]).tolist()
        sol.value_valid = True
        h.setSolution(sol)
    return run_natural_mip(h, mk, time.perf_counter() - t0)


def load_natural_mip(
    h: Any,
    model: NaturalModel,
    *,
    time_limit: float | None,
    gap: float,
    options: dict[str, Any] | None = None,
) -> Any:
    """Set the MIP's options on `h` (seed 0, relative gap, time limit, any `options`) and load
    `model`; returns `h`."""
    h.setOptionValue("random_seed", 0)
    h.setOptionValue("mip_rel_gap", float(gap))
    if time_limit is not None:
        h.setOptionValue("time_limit", max(float(time_limit), 0.01))
    for key, val in (options or {}).items():
        h.setOptionValue(key, val)
    model.pass_to(h)
    return h


def run_natural_mip(h: Any, mk: Market, compile_s: float) -> MIPResult:
    """Run the natural-form MIP loaded in `h` and read its answer (source values, dual bound)."""
    import time

    t1 = time.perf_counter()
    h.run()
    seconds = time.perf_counter() - t1
    info = h.getInfo()
    if info.primal_solution_status != 2:
        raise SolverFailed(f"no solution (status {h.getModelStatus().name})")
    col = np.asarray(h.getSolution().col_value, dtype=float)
    x = np.rint(col[mk.n_places :]).astype(np.int64)
    optimal = h.getModelStatus().name == "kOptimal"
    return MIPResult(optimal, x, -float(info.mip_dual_bound), seconds, compile_s)
