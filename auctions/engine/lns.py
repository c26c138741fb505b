"""Large neighbourhood search for large sub-markets (fix and optimise).

Five moves, all solved by HiGHS on the natural formulation and started from the incumbent, so a
move can only keep or raise welfare; a result is kept when it is better and passes the caller's
checker.

- **Re-source**: keep every winner's placement (model, start, cluster) and re-choose its sources
  and its GPU count on the whole market; then losers are inserted greedily on what is left. Greedy
  gives the cheapest offers to whichever bid comes first; this move alone adds ~0.9 points of the
  LP bound on large-31 in 1-3 s and is usually proven optimal.
- **Re-pack** (given the Lagrangian's capacity prices): one GPU model over the whole horizon, for
  models that free at most REPACK_BIDS bids. Every bid drawing from it, and every loser of a free
  XOR group that could, is freed with two placements only: its award's and its best at the prices
  (seeded jitter per offer on later passes), or, once the LP relaxation has been solved beside
  the search (`guide`), the LP's placement where the LP places the bid. With every placement
  free HiGHS found nothing on such a model in 60 s; with two it proves the sub-MIP in seconds,
  and the moves it finds shift
  many awards in time and across clusters at once, which a region's window cannot: on large-31
  the re-source and the first pass take the engine's start from 92.0% to 95.6% of the LP bound
  in ~22 s.
- **Region**: a region is one GPU model, a window of slots and a chunk of that model's offers
  (all of them unless the window holds too many bids). The bids whose award draws from the
  region's offers during the window, and the losing bids of free XOR groups that could, are
  freed with all their placements (on models that re-packs cover, their award's and their
  REGION_TOP best at the prices); every other award stays fixed and its usage comes off the
  capacity. Regions follow how the market is coupled: bids of one model compete for the same
  offers, and a window lets their start times move. On large-31 they beat blocks of 10 offers
  across the whole horizon (94.1% vs 93.4% of the LP bound in 80 s, same start, same load).
- **XOR switch**: bids are of one model each here and XOR groups span models, so a region of one
  model never frees a winner's sibling in another. A switch frees the winner and a sibling worth
  more in isolation together with the capacity each would use: the winner's sources during its
  award, and the offers of the sibling's best placements (their whole clusters when colocated)
  over its window. On large-31 one such move gained 172k cents (0.38% of the LP bound) in 0.5 s
  where the region sweeps had found nothing in 100 s.
- **Relocation**: the same with the winner itself, when its award is worth less than its best
  placement in isolation. Tried after the regions and switches of a sweep (see `improve`).

With helper processes (`Moves`), moves are solved there, several at once, each from the
incumbent when it was handed out, and their results are folded into the incumbent as they come
back (`absorb`); without, one after the other here.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from .formulation import FloatArray, IntArray, Market, sorted_unique
from .guide import LPGuide, guided_tops
from .heuristics import Allocation, from_x, greedy, orders
from .lagrange import placement_values, source_values
from .solve import SolverFailed, solve_mip_natural

log = logging.getLogger(__name__)

SUB_SECONDS = 5.0
RESOURCE_SECONDS = 10.0
# Slots per region window, and the most bids a region should free (a region with more is cut
# into chunks of the model's offers).
WINDOW_SLOTS = 24
REGION_BIDS = 50
# HiGHS's primal heuristics effort (default 0.05): on the same ten regions of large-31 the
# sub-MIPs found 3.5x more welfare with 0.3 (0.8 was no better).
HEURISTIC_EFFORT = 0.3
# Relative gap of a region's MIP: its objective is a small part of the round's, so closing the
# last 0.1% of it is not worth the time. 1e-2 (2026-12-02) made ~1.7x more moves and gained on
# large-31 (95.74% of the LP bound in one bench run against 95.33-95.44%) but lost on xlarge-41
# (94.87% against 95.105-95.112%, below its target), so it is not used; see run c in
# docs/engine-experiments.md, *Benchmark runs*.
SUB_GAP = 1e-3
# HiGHS's light presolve (`presolve_mode = 2`; default 0, the full one): xlarge-41's sub-MIPs carry
# a capacity row per offer and slot (75k rows, ~1.5k after presolve), and the full presolve took
# ~2.4 s of a 5 s limit; on 21 of its region MIPs the light one found 1.48M cents of gains in 60 s
# against 0.93M, and 240 s searches from one start reached 183.72M twice against 183.40-183.61M.
# Neutral on large-31 (25k rows): docs/engine-experiments.md, *Light presolve in the sub-MIPs*.
SUB_PRESOLVE_MODE = 2
SUB_OPTIONS: dict[str, object] = {
    "mip_heuristic_effort": HEURISTIC_EFFORT,
    "presolve_mode": SUB_PRESOLVE_MODE,
}
# How fast HiGHS gets through the root node of a sub-MIP, in natural-form non-zeros per second,
# and how far past its limit a sub-MIP's root may be expected to run. HiGHS reads its clock
# between the steps of its root node, not within them, and one step, the central rounding (an
# analytic centre by interior point, then a line search of roundings with propagation, ~8-9 us
# per non-zero), comes after five rounds of cuts, ~13 us per non-zero from the start: a
# re-source model of 0.30M non-zeros ran 1.3 s past a 2.0 s limit, one of 0.39M 1.4-3.3 s past
# 1.8-2.1 s (HiGHS's interrupt callback is not called within the step either), and regions of
# wide-window rounds free bids with thousands of start times (16k placements, 28-34M
# non-zeros: 9-11 s for 5 s, nothing found). A move whose root would need more than its limit
# plus `SUB_OVERRUN_S` is narrowed to the placements that can draw on the capacity it frees
# (`_solve_region`), and dropped if it still would; a re-source, whose MIP it would be, keeps
# its greedy insertions only. On large-31 every sub-MIP is far below (31k non-zeros per second
# of its limit at most); on xlarge-41 7 of 53 in 240 s were above, gaining 14,954 cents of the
# search's 1.94M in 30 s of its 162 s (2026-12-03; docs/engine.md, *Large sub-markets*).
SUB_NNZ_PER_SECOND = 75_000
SUB_OVERRUN_S = 1.0
# The search's margin: no move starts with less than this left before its deadline, and a
# move's sub-MIP stops half of it before. A fixed second, as until session 15, left a quarter of
# a 4 s clearing and half of a 2 s one unused (fuzzed rounds at 4 s ended at 2.6-3.2 s); so it
# is `MARGIN_SHARE` of the search's time when that is less (a search of 10 s or more:
# unchanged). The size rule keeps its second of slack (`SUB_OVERRUN_S`): with the margin as
# slack, a 61k-non-zero move at 0.5 s that gains 158k cents on `fuzz_round(83)` was dropped.
MARGIN_SHARE = 0.1
# The most bids a switch should free (its neighbourhood is narrowed until it frees no more, or
# cannot be narrowed further); large-31's switches free 16-98.
SWITCH_BIDS = 2 * REGION_BIDS
# A sweep that has gained stops its relocations after this many in a row that gain nothing: on
# large-31 (2026-12-05) the first sweep's regions and switches gained ~250k cents in 16 s, then
# its 495 relocations 132k in 50 s, none of it after the 300th, and the re-pack pass after the
# sweep +30k in 4.5 s. Clearings of 120 s, three back to back: 43,808,677, 43,813,875 and
# 43,792,178 against 43,770,324, 43,769,320 and 43,757,891 without; 15: 43,793,480, 43,768,812;
# 60: 43,819,047, 43,760,764. A sweep that has gained nothing tries them all (so the search
# still ends after a cycle of sweeps without a gain).
RELOC_DRY = 30

# Re-packs (session 17): one GPU model over the whole horizon, every bid on it freed with two
# placements only: its award's and its best at the Lagrangian's capacity prices. Small enough for
# HiGHS to prove in seconds (large-31: 140-430 placements, 0.2-8 s), where the same bids with all
# their placements found nothing in 60 s. Pass 0 uses the prices as they are; pass i >= 1
# multiplies each offer's prices by a factor drawn in [1 - JITTER, 1 + JITTER] (seeded by i), so
# that other bids prefer other placements. Passes run first, while each gains at least
# REPACK_MIN_GAIN of the welfare, and once more after every sweep that improved. Only models that
# free at most REPACK_BIDS bids: xlarge-41's free 690-930, and re-packs of chunks of their offers
# gained less there than the regions (182.83M against 183.78M in 240 s from one start).
REPACK_SECONDS = 10.0
REPACK_BIDS = 200
REPACK_JITTER = 0.3
REPACK_MIN_GAIN = 5e-4
# A re-pack's MIP runs without HiGHS's restart (when its root node's cut rounds have fixed a few
# per cent of the columns, HiGHS presolves the reduced MIP and solves its root again, ~1-1.5 s on
# large-31): the 40 re-pack MIPs of a one-process search of large-31, each re-solved from its own
# start and limit, took 93.2 s and gained 1,323,733 cents without it against 138.4 s and
# 1,239,146 with it (H200's first proven in 7.4 s with +297k, against +258k at its 10 s limit).
# Clearings of 120 s (2026-12-06): 43,861,255 / 43,875,731 / 43,795,085 / 43,800,563 against
# 43,616,703 / 43,689,568 / 43,806,830 / 43,860,775 with it, alternated. Regions, switches and
# relocations keep it (session 15: no restart was -0.04 point on xlarge-41, which has no re-packs).
REPACK_OPTIONS: dict[str, object] = {**SUB_OPTIONS, "mip_allow_restart": False}
# A region of such a model frees each bid with its award and its REGION_TOP best placements at the
# prices, not all (smaller sub-MIPs, more moves): measured (105 s from one start) large-31
# 43,625,299 against 43,570,011, large-31 resampled 37,555,666 / 37,507,173 against 37,232,176 /
# 37,467,230; on all of xlarge-41's (big) models it lost 0.2 point in 240 s, so only there.
REGION_TOP = 3
# From the second sweep on, those REGION_TOP (and SWITCH_TOP) best are ranked at prices jittered
# like a re-pack pass's (`sweep_prices`; seeds from SWEEP_SEED, apart from the passes'): the
# search reaches a local optimum of its moves by ~75-90 s on large-31, and with the same top
# placements every sweep its regions offer the same choices again. Clearings of 120 s
# (2026-12-06): 43,808,934-43,855,968 (nine, mean 43,835,223) against 43,765,726-43,878,862
# (fifteen, mean ~43.81M) with the Lagrangian's ranks on every sweep; factors in [0.4, 1.6]
# instead: 43,830,015 / 43,844,822 / 43,831,540 against 43,834,137 / 43,855,968 / 43,825,781.
SWEEP_SEED = 1000
# A switch or relocation there frees its bids with their award and SWITCH_TOP best placements
# (the winner and sibling it is about keep all theirs): large-31 from one incumbent, 60 s,
# 43.74M twice against 43.61M twice with every placement (3: 43.69M; 1: 43.72M; 5: 43.70M).
SWITCH_TOP = 2
# Priced switches (session 22): with the Lagrangian's prices, a sweep's switches also include
# siblings worth less in isolation than the winner's award but more at the prices (the LP's
# reduced costs), which no region or re-pack can make (`switches`). From the end of a large-31
# clearing, 3 of 7 such pairs gained 7,200 cents in 6.8 s; whole clearings of 120 s with them
# 43,835,315 / 43,793,257 / 43,767,227 against 43,847,351 / 43,792,743 / 43,841,333 without
# (each pair of equal Lagrangian bounds within 12k: no measurable change on large-31).
PRICED_SWITCHES = True
# Every sub-MIP of the search gets the rows `x[k] <= ub[k] z[p]`, `ub[k]` at most what its offer
# has left over its window once the fixed awards are taken (`solve.add_source_bounds` with the
# sub-MIP's capacity): the awards fixed around a move take most offers in part, so without them
# the relaxation lets a fractional placement draw more than the offer has left. Large-31's first
# three re-pack passes from one start: +1,342,075 in 27.9 s with them, +1,271,873 in 31.8 s
# without; 120 s clearings 43,819,000-43,859,931 against 43,774,371-43,810,247 (docs/engine.md,
# *Source bounds in the sub-MIPs*).
SUB_SOURCE_BOUNDS = True
# Moves out at once while the LP guide is still being solved: it shares the two cores with them,
# and the passes it guides gain more than the prices'. Large-31's LP arrived at 24.3-26.2 s in
# six clearings with one, at 25.0-43.0 s with two (docs/engine.md, *The LP as a guide*).
GUIDE_PENDING_HELPERS = 1

Valid = Callable[[Market, Allocation], bool]
Restrict = Callable[[Market, np.ndarray], tuple[Market, IntArray]]


def _usage(mk: Market, x: IntArray, bids: IntArray) -> IntArray:
    """GPUs used per (offer, slot) by the awards of `bids`."""
    ks = np.flatnonzero(x)
    ks = ks[np.isin(mk.p_bid[mk.k_place[ks]], bids)]
    slots = mk.rnd.slots
    diff = np.zeros((mk.o_gpus.size, slots + 1), dtype=np.int64)
    p = mk.k_place[ks]
    np.add.at(diff, (mk.k_offer[ks], mk.p_start[p]), x[ks])
    np.add.at(diff, (mk.k_offer[ks], mk.p_end[p]), -x[ks])
    out: IntArray = np.cumsum(diff, axis=1)[:, :slots]
    return out


def resource(mk: Market, inc: Allocation, *, seconds: float, valid: Valid, restrict: Restrict) -> Allocation:
    """Re-choose the sources of every award (placements kept), then insert losers greedily."""
    best = inc
    keep = np.zeros(mk.n_places, dtype=bool)
    keep[inc.chosen[inc.chosen >= 0]] = True
    # (a model too big for its time is not tried: HiGHS would overrun it, `SUB_NNZ_PER_SECOND`)
    if keep.any() and seconds > 0.2 and _fits(mk, keep, seconds):
        sub, kmap = restrict(mk, keep)
        try:
            mip = solve_mip_natural(sub, time_limit=seconds, gap=1e-6, warm=inc.x[kmap], options=SUB_OPTIONS)
            x = np.zeros(mk.n_sources, dtype=np.int64)
            x[kmap] = mip.x
            cand = from_x(mk, x)
            if cand.welfare(mk) > inc.welfare(mk) + 1e-6 and valid(mk, cand):
                best = cand
        except SolverFailed:
            pass
    for order in orders(mk):
        cand = greedy(mk, order, start=best)
        if cand.welfare(mk) > best.welfare(mk) + 1e-6:
            best = cand
    return best


def regions(mk: Market, window: int, shift: int) -> list[tuple[IntArray, int, int]]:
    """(offers, first slot, end slot) of every region of one sweep, models interleaved so that
    every model gets attention early; deterministic."""
    slots = mk.rnd.slots
    bid_model = np.full(mk.b_gpus.size, -1, dtype=np.int64)
    bid_model[mk.p_bid] = mk.p_model
    es = np.array([b.earliest_start for b in mk.rnd.bids], dtype=np.int64)
    le = np.array([b.latest_end for b in mk.rnd.bids], dtype=np.int64)
    offs = mk.rnd.offers
    out: list[tuple[int, int, IntArray, int, int]] = []
    for m in range(len(mk.models)):
        mo = [o for o in range(len(offs)) if mk.o_model[o] == m]
        mo.sort(key=lambda o: (offs[o].cluster, offs[o].start_slot, o))
        for i, a in enumerate(range(-shift, slots, window)):
            b = a + window
            n = int(np.count_nonzero((bid_model == m) & (es < b) & (le > a)))
            chunks = max(1, min(len(mo), math.ceil(n / REGION_BIDS)))
            for j, part in enumerate(np.array_split(np.array(mo, dtype=np.int64), chunks)):
                if part.size:
                    out.append((i, j * len(mk.models) + m, part, max(a, 0), min(b, slots)))
    out.sort(key=lambda r: (r[0], r[1]))
    return [(part, a, b) for _, _, part, a, b in out]


def _touch(mk: Market, offers: IntArray, a: int, b: int) -> np.ndarray:
    """Sources on `offers` during [a, b) (a region's capacity), as a mask."""
    in_o = np.zeros(len(mk.rnd.offers), dtype=bool)
    in_o[offers] = True
    p = mk.k_place
    out: np.ndarray = in_o[mk.k_offer] & (mk.p_start[p] < b) & (mk.p_end[p] > a)
    return out


def _freed(mk: Market, best: Allocation, offers: IntArray, a: int, b: int) -> IntArray:
    """Bids freed by a region: winners drawing from its offers in [a, b), and losers of free XOR
    groups that have a placement that could."""
    return _free(mk, best, _touch(mk, offers, a, b))


def _free(mk: Market, best: Allocation, touch: np.ndarray, extra: IntArray | None = None) -> IntArray:
    """Winners with a used source in `touch` (and `extra`), and losers of groups left free that
    have a source in `touch`."""
    p = mk.k_place
    nb = mk.b_gpus.size
    freed = np.zeros(nb, dtype=bool)
    freed[mk.p_bid[p[touch & (best.x > 0)]]] = True
    if extra is not None:
        freed[extra] = True
    winners = best.chosen >= 0
    blocked = np.zeros(mk.n_groups, dtype=bool)
    blocked[mk.b_group[winners & ~freed]] = True
    cand = np.zeros(nb, dtype=bool)
    cand[mk.p_bid[p[touch]]] = True
    out: IntArray = np.flatnonzero(freed | (cand & ~winners & ~blocked[mk.b_group]))
    return out


def _award_values(mk: Market, best: Allocation, per_gpu: FloatArray | None = None) -> FloatArray:
    """Welfare of each bid's award (0 for losers); given `per_gpu`, a value per GPU of each source
    (`lagrange.source_values`: welfare less capacity prices), the award's value at those."""
    per = mk.k_value if per_gpu is None else per_gpu
    vals = np.bincount(mk.p_bid[mk.k_place], weights=best.x * per, minlength=mk.b_gpus.size)
    return np.asarray(vals, dtype=np.float64)


def switches(mk: Market, best: Allocation, lam: FloatArray | None = None) -> list[tuple[int, int, float]]:
    """Switch moves (winner, bid, opportunity), most promising first; deterministic. `bid` is an
    XOR sibling of the winner worth more in isolation than the winner's award, or the winner
    itself when its award is worth less than its best placement in isolation (a relocation);
    the opportunity is the difference. Given capacity prices `lam`, also the siblings worth
    less in isolation but more at the prices (`PRICED_SWITCHES`), with that difference."""
    nb = mk.b_gpus.size
    has = mk.b_pstart[1:] > mk.b_pstart[:-1]
    iso = np.zeros(nb)
    if mk.n_places:
        np.maximum.at(iso, mk.p_bid, mk.p_best)
    award = _award_values(mk, best)
    winner = np.full(mk.n_groups, -1, dtype=np.int64)
    won = np.flatnonzero(best.chosen >= 0)
    winner[mk.b_group[won]] = won
    sib = np.flatnonzero(has & (best.chosen < 0) & (winner[mk.b_group] >= 0))
    ws = winner[mk.b_group[sib]]  # each sibling's winner
    w = np.concatenate([ws, won])
    s = np.concatenate([sib, won])
    gain = iso[s] - award[w]
    if lam is not None and sib.size:
        priced = _priced_best(mk, lam)[sib] - _award_values(mk, best, source_values(mk, lam))[ws]
        more = (priced > 1e-6) & (gain[: sib.size] <= 1e-6)
        w, s = np.concatenate([w, ws[more]]), np.concatenate([s, sib[more]])
        gain = np.concatenate([gain, priced[more]])
    ok = gain > 1e-6
    w, s, gain = w[ok], s[ok], gain[ok]
    order = np.lexsort((s, w, -gain))
    return [(int(w[i]), int(s[i]), float(gain[i])) for i in order]


def _priced_best(mk: Market, lam: FloatArray) -> FloatArray:
    """Each bid's best placement's value at capacity prices `lam` (-inf for a bid with none)."""
    out = np.full(mk.b_gpus.size, -np.inf)
    if mk.n_places:
        np.maximum.at(out, mk.p_bid, placement_values(mk, lam))
    return out


def _switch_freed(mk: Market, best: Allocation, w: int, s: int) -> tuple[IntArray, np.ndarray]:
    """Bids freed to let `s` replace winner `w` (or move it, when `s == w`): both; the winners
    drawing from the offers of `s`'s three best placements (whole clusters when it is colocated)
    in its window, and from `w`'s sources during its award; and the losers of free groups that
    could use either. When that frees more than `SWITCH_BIDS`, only `s`'s best placement's
    offers, then only during that placement, then only the losers worth most (xlarge-41 freed
    80-390 bids at first, mostly losers). Also returns the sources on the capacity it frees (for
    `_solve_region`'s narrowing)."""
    p0, p1 = int(mk.b_pstart[s]), int(mk.b_pstart[s + 1])
    ps = np.arange(p0, p1)
    ps = ps[np.lexsort((ps, -mk.p_best[ps]))]
    bid = mk.rnd.bids[s]
    pw = int(best.chosen[w])
    kw = np.arange(mk.p_kstart[pw], mk.p_kstart[pw + 1])
    kw = kw[best.x[kw] > 0]
    p = mk.k_place
    out: IntArray = np.zeros(0, dtype=np.int64)
    for top, a, b in (
        (3, bid.earliest_start, bid.latest_end),
        (1, bid.earliest_start, bid.latest_end),
        (1, int(mk.p_start[ps[0]]), int(mk.p_end[ps[0]])),
    ):
        ks = np.concatenate([np.arange(mk.p_kstart[q], mk.p_kstart[q + 1]) for q in ps[:top].tolist()])
        offs = sorted_unique(mk.k_offer[ks])
        if bid.colocate:
            offs = np.flatnonzero(
                np.isin(mk.o_cluster, mk.o_cluster[offs]) & (mk.o_model == mk.o_model[offs[0]])
            )
        touch = np.zeros(mk.n_sources, dtype=bool)
        for o, a0, b0 in ((offs, a, b), (mk.k_offer[kw], int(mk.p_start[pw]), int(mk.p_end[pw]))):
            in_o = np.zeros(len(mk.rnd.offers), dtype=bool)
            in_o[o] = True
            touch |= in_o[mk.k_offer] & (mk.p_start[p] < b0) & (mk.p_end[p] > a0)
        out = _free(mk, best, touch, extra=np.array([w, s], dtype=np.int64))
        if out.size <= SWITCH_BIDS:
            return out, touch
    # still too many: every freed winner, `s`, and the losers worth most in isolation up to the cap
    # (a loser left out only stays a loser)
    lose = out[(best.chosen[out] < 0) & (out != s)]
    iso = np.zeros(mk.b_gpus.size)
    np.maximum.at(iso, mk.p_bid, mk.p_best)
    keep = out[(best.chosen[out] >= 0) | (out == s)]
    room = max(SWITCH_BIDS - keep.size, 0)
    lose = lose[np.lexsort((lose, -iso[lose]))][:room]
    return np.sort(np.concatenate([keep, lose])), touch


def switch(
    mk: Market,
    best: Allocation,
    w: int,
    s: int,
    *,
    seconds: float,
    gap: float,
    valid: Valid,
    restrict: Restrict,
) -> Allocation:
    """Try to let bid `s` replace `w`, the winner of its XOR group (or to move `w` when
    `s == w`): a MIP over the bids `_switch_freed` frees, everything else fixed; never worse
    than `best`."""
    nb, touch = _switch_freed(mk, best, w, s)
    return _solve_region(mk, best, nb, seconds, max(gap, SUB_GAP), valid, restrict, touch)


def _opportunity(mk: Market, best: Allocation, nb: IntArray) -> float:
    """What a region could add at most, roughly: the isolated value of the losers it frees."""
    losers = nb[best.chosen[nb] < 0]
    if not losers.size:
        return 0.0
    val = np.zeros(mk.b_gpus.size)
    np.maximum.at(val, mk.p_bid, mk.p_best)
    return float(val[losers].sum())


def _model_nnz(mk: Market, keep: np.ndarray) -> int:
    """Non-zeros of the natural model of the placements in `keep` (`solve.natural_model`: three
    link entries per placement, two per source and one per slot it covers)."""
    per = np.diff(mk.p_kstart) * (mk.p_end - mk.p_start + 2) + 3
    return int(per[keep].sum())


def _fits(mk: Market, keep: np.ndarray, seconds: float) -> bool:
    """Whether HiGHS's root node on the sub-MIP of the placements in `keep` should end within
    `seconds` plus `SUB_OVERRUN_S`."""
    return _model_nnz(mk, keep) <= SUB_NNZ_PER_SECOND * (seconds + SUB_OVERRUN_S)


def _solve_region(
    mk: Market,
    best: Allocation,
    nb: IntArray,
    seconds: float,
    gap: float,
    valid: Valid,
    restrict: Restrict,
    touch: np.ndarray,
    keep: np.ndarray | None = None,
    options: dict[str, object] | None = None,
) -> Allocation:
    """A MIP over the placements of the bids `nb` (those in `keep` if given), everything else
    fixed, solved with HiGHS `options` (SUB_OPTIONS by default). When that model is too big for
    `seconds` (`SUB_NNZ_PER_SECOND`) the freed bids keep only their current placement and those
    with a source in `touch` (the capacity the move frees); the move is dropped if the model is
    still too big (`_fits`)."""
    keep = np.isin(mk.p_bid, nb) if keep is None else keep
    if not keep.any():
        return best
    if not _fits(mk, keep, seconds):
        near = np.zeros(mk.n_places, dtype=bool)
        near[mk.k_place[touch]] = True
        chosen = best.chosen[nb]
        near[chosen[chosen >= 0]] = True
        keep &= near
        if not _fits(mk, keep, seconds):
            return best
    fixed = np.setdiff1d(np.flatnonzero(best.chosen >= 0), nb)
    sub, kmap = restrict(mk, keep)
    cap = mk.o_gpus[:, None] - _usage(mk, best.x, fixed)
    try:
        mip = solve_mip_natural(
            sub,
            time_limit=seconds,
            gap=gap,
            warm=best.x[kmap],
            cap=cap,
            options=SUB_OPTIONS if options is None else options,
            source_bounds=SUB_SOURCE_BOUNDS,
        )
    except SolverFailed:
        return best
    x = best.x.copy()
    x[kmap] = mip.x
    cand = from_x(mk, x)
    if cand.welfare(mk) > best.welfare(mk) + 1e-6 and valid(mk, cand):
        log.debug("LNS: %d bids freed: %.0f -> %.0f", nb.size, best.welfare(mk), cand.welfare(mk))
        return cand
    return best


def placement_ranks(mk: Market, values: FloatArray) -> IntArray:
    """Each placement's rank within its bid by `values` (0 for the highest; ties by index)."""
    order = np.lexsort((np.arange(mk.n_places), -values, mk.p_bid))
    rank = np.empty(mk.n_places, dtype=np.int64)
    rank[order] = np.arange(mk.n_places) - mk.b_pstart[mk.p_bid[order]]
    return rank


def top_placements(mk: Market, values: FloatArray) -> IntArray:
    """Each bid's placement of highest `values` (the first on ties; -1 for a bid with none)."""
    has = mk.b_pstart[1:] > mk.b_pstart[:-1]
    out = np.full(mk.b_gpus.size, -1, dtype=np.int64)
    out[has] = np.flatnonzero(placement_ranks(mk, values) == 0)  # placements are in bid order
    return out


def _with_awards(mk: Market, best: Allocation, nb: IntArray, keep: np.ndarray) -> np.ndarray:
    """`keep` plus the placements of the awards of the bids `nb` (a move can always stay put)."""
    c = best.chosen[nb]
    keep[c[c >= 0]] = True
    return keep


def repack_prices(lam: FloatArray, i: int) -> FloatArray:
    """The capacity prices of re-pack pass `i`: the Lagrangian's, each offer's row scaled by a
    seeded factor in [1 - REPACK_JITTER, 1 + REPACK_JITTER] from the second pass on."""
    if i == 0:
        return lam
    rng = np.random.default_rng(i)
    out: FloatArray = lam * (1.0 + REPACK_JITTER * rng.uniform(-1.0, 1.0, size=(lam.shape[0], 1)))
    return out


def sweep_prices(lam: FloatArray, sweep: int) -> FloatArray:
    """The prices that rank a sweep's placements (`REGION_TOP`, `SWITCH_TOP`): the Lagrangian's
    on the first sweep, then jittered as a re-pack pass's are (`repack_prices`), with seeds of
    their own, so that each later sweep offers its regions and switches other top placements."""
    return lam if sweep == 0 else repack_prices(lam, SWEEP_SEED + sweep)


def repack_units(mk: Market, best: Allocation) -> list[IntArray]:
    """The offers of each re-pack of a pass: each GPU model's whose re-pack frees at most
    REPACK_BIDS bids (bigger ones are left to the regions)."""
    out: list[IntArray] = []
    for m in range(len(mk.models)):
        mo = np.flatnonzero(mk.o_model == m)
        if mo.size and _free(mk, best, mk.o_model[mk.k_offer] == m).size <= REPACK_BIDS:
            out.append(mo)
    return out


def repack_move(
    mk: Market, best: Allocation, offers: IntArray, top: IntArray
) -> tuple[IntArray, np.ndarray, np.ndarray]:
    """The re-pack of `offers` over the whole horizon: the bids freed (the winners drawing from
    them and the losers of free groups that could), the sources on `offers`, and the placements
    the freed bids keep (two at most: the award's and `top`'s, if that one draws from `offers`)."""
    in_o = np.zeros(len(mk.rnd.offers), dtype=bool)
    in_o[offers] = True
    touch = in_o[mk.k_offer]
    nb = _free(mk, best, touch)
    near = np.zeros(mk.n_places, dtype=bool)
    near[mk.k_place[touch]] = True
    keep = np.zeros(mk.n_places, dtype=bool)
    t = top[nb]
    keep[t[t >= 0]] = True
    keep &= near
    return nb, touch, _with_awards(mk, best, nb, keep)


def repack(
    moves: Moves,
    best: Allocation,
    move: tuple[IntArray, np.ndarray, np.ndarray],
    *,
    seconds: float,
    gap: float,
) -> Allocation:
    """Solve a re-pack (`move`, from `repack_move`) through `moves`, without HiGHS's restart
    (REPACK_OPTIONS), everything else fixed. Never worse than `best`."""
    nb, touch, keep = move
    return moves.solve(best, nb, seconds, gap, touch, keep, REPACK_OPTIONS)


def _changed(mk: Market, a: Allocation, b: Allocation) -> IntArray:
    """Bids whose award (placement or sources) differs between `a` and `b`."""
    diff = np.flatnonzero(a.x != b.x)
    return sorted_unique(mk.p_bid[mk.k_place[diff]])


def absorb(
    mk: Market,
    best: Allocation,
    base: Allocation,
    found: Allocation,
    *,
    seconds: float,
    gap: float,
    valid: Valid,
    restrict: Restrict,
) -> Allocation:
    """Fold `found`, a move's result from the incumbent `base` it started from, into `best`, the
    incumbent now (other moves may have changed it since). The bids the move changed take their
    new awards when that is valid and better; when it is not (the capacity or an XOR group they
    need went to another move meanwhile), a MIP over the bids either side changed, each between
    its award now and the move's, decides. Never worse than `best`."""
    if found.welfare(mk) <= base.welfare(mk) + 1e-6:
        return best
    moved = _changed(mk, base, found)
    mine = np.isin(mk.p_bid[mk.k_place], moved)
    x = best.x.copy()
    x[mine] = found.x[mine]
    cand = from_x(mk, x)
    if cand.welfare(mk) > best.welfare(mk) + 1e-6 and valid(mk, cand):
        log.debug("LNS: folded in: %.0f -> %.0f", best.welfare(mk), cand.welfare(mk))
        return cand
    if seconds < 0.05:
        return best  # (no time left to merge)
    nb = np.union1d(moved, _changed(mk, base, best))
    log.debug(
        "LNS: merge of %d bids (%d moved; found %.0f from %.0f)",
        nb.size,
        moved.size,
        found.welfare(mk),
        base.welfare(mk),
    )
    keep = np.zeros(mk.n_places, dtype=bool)
    for alloc in (best, found):
        c = alloc.chosen[nb]
        keep[c[c >= 0]] = True
    return _solve_region(mk, best, nb, seconds, gap, valid, restrict, keep[mk.k_place], keep)


# A helper process's copy of the search's market and checks (`_helper_init`).
_HELPER: dict[str, object] = {}


def _helper_init(mk: Market, valid: Valid, restrict: Restrict) -> None:
    _HELPER.update(mk=mk, valid=valid, restrict=restrict)


def _helper_region(
    x: IntArray,
    nb: IntArray,
    seconds: float,
    gap: float,
    touch: IntArray,
    keep: IntArray | None,
    options: dict[str, object] | None = None,
) -> IntArray | None:
    """`_solve_region` in a helper process, on index arrays; the new `x`, or None (no gain)."""
    mk = _HELPER["mk"]
    assert isinstance(mk, Market)
    best = from_x(mk, x)
    t = np.zeros(mk.n_sources, dtype=bool)
    t[touch] = True
    k = None
    if keep is not None:
        k = np.zeros(mk.n_places, dtype=bool)
        k[keep] = True
    valid, restrict = _HELPER["valid"], _HELPER["restrict"]
    out = _solve_region(mk, best, nb, seconds, gap, valid, restrict, t, k, options)  # type: ignore[arg-type]
    return None if out is best else out.x


class Moves:
    """Where the search's moves are solved: here, one after the other (`helpers == 0`), or in
    `helpers` processes, that many at once, each from the incumbent when it was handed out;
    results are folded into the incumbent as they come back (`absorb`)."""

    def __init__(
        self, mk: Market, *, valid: Valid, restrict: Restrict, helpers: int = 0, deadline: float = math.inf
    ) -> None:
        self.mk, self.valid, self.restrict = mk, valid, restrict
        # a merge MIP (`absorb`) ends by then, however long the move it merges had
        self.deadline = deadline
        self.helpers = self.slots = helpers
        # while this says the LP guide is still being solved, at most GUIDE_PENDING_HELPERS moves
        # are out at once (see `_improve`)
        self.pending: Callable[[], bool] | None = None
        self.pool: ProcessPoolExecutor | None = None
        # (future, incumbent it started from, its time limit and gap, the bids it frees)
        self.jobs: list[tuple[Future[IntArray | None], Allocation, float, float, IntArray]] = []
        if helpers > 0:
            self.pool = ProcessPoolExecutor(
                max_workers=helpers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_helper_init,
                initargs=(mk, valid, restrict),
            )

    def solve(
        self,
        best: Allocation,
        nb: IntArray,
        seconds: float,
        gap: float,
        touch: np.ndarray,
        keep: np.ndarray | None = None,
        options: dict[str, object] | None = None,
    ) -> Allocation:
        """The move freeing `nb` (`_solve_region`, with HiGHS `options`), built on `best` after
        `ready`: solved now, or handed to the free helper; returns the incumbent with every
        result back by then folded in."""
        self._cap()
        args = (seconds, gap, self.valid, self.restrict, touch, keep, options)
        if self.pool is None or len(self.jobs) >= self.slots:
            return _solve_region(self.mk, best, nb, *args)
        k = None if keep is None else np.flatnonzero(keep)
        try:
            fut = self.pool.submit(
                _helper_region, best.x, nb, seconds, gap, np.flatnonzero(touch), k, options
            )
        except (BrokenProcessPool, OSError, RuntimeError):
            self._lost()
            return _solve_region(self.mk, best, nb, *args)
        self.jobs.append((fut, best, seconds, gap, nb))
        return self._collect(best, block=False)

    def ready(self, best: Allocation) -> Allocation:
        """`best` with results folded in until a helper is free (at once without helpers): the
        next move is built on what this returns."""
        self._cap()
        while self.pool is not None and len(self.jobs) >= self.slots:
            best = self._collect(best, block=True)
        return best

    def _cap(self) -> None:
        if self.pending is not None and self.helpers > GUIDE_PENDING_HELPERS:
            self.slots = GUIDE_PENDING_HELPERS if self.pending() else self.helpers

    def overlaps(self, nb: IntArray) -> bool:
        """Whether a move still out frees any of the bids `nb`."""
        return any(np.intersect1d(j[4], nb).size for j in self.jobs)

    def drain(self, best: Allocation) -> Allocation:
        """`best` with every move handed out folded in (waits for them)."""
        while self.jobs:
            best = self._collect(best, block=True)
        return best

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def _lost(self) -> None:
        """A helper died (killed, out of memory): the moves still out are lost (the incumbent
        never depended on them) and the search goes on in this process."""
        log.warning("LNS: a helper process died; the search goes on in this one")
        self.jobs.clear()
        if self.pool is not None:
            # the others too: a broken pool would keep them waiting, and this process's exit
            # waits for them
            procs = list(getattr(self.pool, "_processes", {}).values())
            self.pool.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                p.kill()
            self.pool = None

    def _collect(self, best: Allocation, *, block: bool) -> Allocation:
        done, _ = wait([j[0] for j in self.jobs], timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for job in [j for j in self.jobs if j[0] in done]:
            self.jobs.remove(job)
            fut, base, seconds, gap, _ = job
            try:
                x = fut.result()
            except (BrokenProcessPool, OSError):
                self._lost()
                return best
            if x is not None:
                found = from_x(self.mk, x)
                best = absorb(
                    self.mk,
                    best,
                    base,
                    found,
                    seconds=min(seconds, self.deadline - time.perf_counter()),
                    gap=gap,
                    valid=self.valid,
                    restrict=self.restrict,
                )
        return best


def improve(
    mk: Market,
    inc: Allocation,
    *,
    deadline: float,
    gap: float,
    valid: Valid,
    restrict: Restrict,
    bound: float = math.inf,
    lam: FloatArray | None = None,
    helpers: int = 0,
    guide: LPGuide | None = None,
) -> Allocation:
    """Re-source, then (given the Lagrangian's prices `lam`) passes of re-packs while they gain,
    then sweeps of moves until the deadline: regions (windows shifted, and top placements ranked
    at jittered prices, on later sweeps: `sweep_prices`) and XOR switches, most promising
    first, then relocations (in a sweep that has gained, until RELOC_DRY in a row gain
    nothing); a re-pack pass and a re-source after every sweep that improved. Stops early once
    the incumbent is within `gap` of `bound` (a valid bound: nothing better exists). Returns
    the best found (never worse than `inc`). With `helpers`, the moves of a re-pack pass and of
    a sweep are solved in that many processes at once (`Moves`), at most GUIDE_PENDING_HELPERS
    while `guide`'s LP is still being solved; once it has arrived, re-pack passes take their
    placements from it (`guide.guided_tops`)."""
    if inc.welfare(mk) >= (1.0 - gap) * bound - 1e-6:
        return inc
    moves = Moves(mk, valid=valid, restrict=restrict, helpers=helpers, deadline=deadline)
    try:
        return _improve(mk, inc, moves, deadline=deadline, gap=gap, bound=bound, lam=lam, guide=guide)
    finally:
        moves.close()


def _improve(
    mk: Market,
    inc: Allocation,
    moves: Moves,
    *,
    deadline: float,
    gap: float,
    bound: float,
    lam: FloatArray | None,
    guide: LPGuide | None = None,
) -> Allocation:
    """`improve`'s search, its moves solved by `moves`."""
    valid, restrict = moves.valid, moves.restrict

    def left() -> float:
        return deadline - time.perf_counter()

    def proven() -> bool:
        return best.welfare(mk) >= (1.0 - gap) * bound - 1e-6

    best = inc
    if guide is not None:
        moves.pending = guide.pending

    margin = min(1.0, MARGIN_SHARE * max(left(), 0.0))
    best = resource(mk, inc, seconds=min(RESOURCE_SECONDS, left() * 0.2), valid=valid, restrict=restrict)
    passes = guided = 0

    def lp_z() -> FloatArray | None:
        return None if guide is None else guide.z()

    def repack_pass() -> Allocation:
        """One re-pack of every unit at the next pass's prices."""
        nonlocal passes, guided
        assert lam is not None
        out = best
        units = repack_units(mk, out)
        z = lp_z()
        if not units:
            # (no model small enough: xlarge-41's 1.5M sources would be priced for nothing; an
            # LP that has arrived counts as used, so the sweeps do not call for its passes again)
            guided += z is not None
            return out
        top = top_placements(mk, placement_values(mk, repack_prices(lam, passes)))
        if z is not None:
            # the LP's placements where it places the bid (`guide`): its largest z first, then
            # drawn by z; the prices' elsewhere
            top = guided_tops(mk, z, guided, top)
            guided += 1
        passes += 1
        for offers in units:
            out = moves.ready(out)
            if left() < margin or out.welfare(mk) >= (1.0 - gap) * bound - 1e-6:
                break
            seconds = min(REPACK_SECONDS, left() - margin / 2)
            move = repack_move(mk, out, offers, top)
            if moves.overlaps(move[0]):
                # the last pass's re-pack of this model is still out (B200's runs ~15 s on
                # large-31): its result first, rather than two re-packs of one model at once
                out = moves.drain(out)
                if left() < margin:
                    break
                seconds = min(REPACK_SECONDS, left() - margin / 2)
                move = repack_move(mk, out, offers, top)
            out = repack(moves, out, move, seconds=seconds, gap=max(gap, SUB_GAP))
        # (with helpers, the pass's last moves are still out: the next pass or sweep starts
        # meanwhile, and their results are folded in as they come)
        return out

    def passes_while_they_gain() -> None:
        nonlocal best
        while left() > margin and not proven():
            before = best.welfare(mk)
            best = repack_pass()
            if best.welfare(mk) - before < REPACK_MIN_GAIN * before:
                break

    if lam is not None:
        passes_while_they_gain()
    # switch pairs already tried (without a gain) since the last sweep that improved
    tried: set[tuple[int, int]] = set()
    w = window = min(WINDOW_SLOTS, mk.rnd.slots)
    shifts = [0, w // 2, w // 4, 3 * w // 4]
    sweep = stalled = 0
    while left() > margin and stalled < len(shifts) and not proven():
        if lam is not None and guided == 0 and lp_z() is not None:
            # the LP arrived after the passes ended: passes guided by it, while they gain
            passes_while_they_gain()
        start_w = best.welfare(mk)
        regs = regions(mk, window, shifts[sweep % len(shifts)])
        # regions of models small enough for re-packs free each bid with few placements
        # (REGION_TOP); `rank`: each placement's rank within its bid at this sweep's prices
        # (`sweep_prices`: the Lagrangian's, jittered from the second sweep on)
        few = np.zeros(len(mk.models), dtype=bool)
        rank: IntArray | None = None
        if lam is not None:
            few[[int(mk.o_model[u[0]]) for u in repack_units(mk, best)]] = True
            if few.any():
                rank = placement_ranks(mk, placement_values(mk, sweep_prices(lam, sweep)))
        # (tier, -opportunity, kind, index): regions by the isolated value of the losers they
        # free and XOR switches by what the new award could add in isolation, interleaved;
        # relocations (a winner moved towards its best placement) after them, because early on
        # they gain far less per second than regions (large-31 from greedy: ~1k vs ~8k cents/s;
        # switches ~60k) but more once regions stall (from a 95% incumbent: ~2k vs ~0.4k)
        todo = [
            (0, -_opportunity(mk, best, _freed(mk, best, o, a, b)), 0, i) for i, (o, a, b) in enumerate(regs)
        ]
        pairs = [pr for pr in switches(mk, best, lam if PRICED_SWITCHES else None) if pr[:2] not in tried]
        todo += [(int(wb == sb), -g, 1, j) for j, (wb, sb, g) in enumerate(pairs)]
        todo.sort()
        # relocations handed out since the incumbent last improved (RELOC_DRY)
        dry, last_w = 0, best.welfare(mk)
        for tier, _, kind, i in todo:
            best = moves.ready(best)
            if left() < margin or proven():
                break
            if best.welfare(mk) > last_w + 1e-6:
                dry, last_w = 0, best.welfare(mk)
            if tier == 1 and best.welfare(mk) > start_w + 1e-6:  # (tier 1: the relocations, last)
                if dry >= RELOC_DRY:
                    break
                dry += 1
            seconds = min(SUB_SECONDS, left() - margin / 2)
            keep: np.ndarray | None = None
            if kind == 0:
                offers, a, b = regs[i]
                touch = _touch(mk, offers, a, b)
                nb = _free(mk, best, touch)
                if not nb.size:
                    continue
                if rank is not None and few[mk.o_model[offers[0]]]:
                    keep = _with_awards(mk, best, nb, np.isin(mk.p_bid, nb) & (rank < REGION_TOP))
            else:
                wb, sb, _ = pairs[i]
                if best.chosen[wb] < 0 or (sb != wb and best.chosen[sb] >= 0):
                    continue  # an earlier move changed the group
                nb, touch = _switch_freed(mk, best, wb, sb)
                if rank is not None:
                    # the bids it frees on re-packable models keep their award and SWITCH_TOP
                    # best placements at the prices; `wb` and `sb` keep all of theirs
                    keep = np.isin(mk.p_bid, nb) & ((rank < SWITCH_TOP) | ~few[mk.p_model])
                    keep |= np.isin(mk.p_bid, [wb, sb])
                    keep = _with_awards(mk, best, nb, keep)
                tried.add((wb, sb))
            best = moves.solve(best, nb, seconds, max(gap, SUB_GAP), touch, keep)
        sweep += 1
        if best.welfare(mk) > start_w + 1e-6:
            stalled = 0
            tried.clear()
            if lam is not None and left() > margin and not proven():
                best = repack_pass()
            if left() > margin and not proven():
                best = resource(
                    mk, best, seconds=min(RESOURCE_SECONDS, left() * 0.2), valid=valid, restrict=restrict
                )
        else:
            stalled += 1  # a whole cycle of shifted sweeps without a gain ends the search
    return moves.drain(best)
