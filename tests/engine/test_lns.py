"""The large-round path (Lagrangian bound + large neighbourhood search), forced on rounds small
enough to check: valid, never below greedy, better than greedy where greedy is poor, a bound that
holds; and the engine's silence on stdout."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import auctions.engine.clearing as clearing
from auctions.engine import clear, lns, solve
from auctions.engine.formulation import build_market
from auctions.engine.heuristics import best_greedy
from auctions.engine.rounds import parse_round
from auctions.engine.solve import MIPResult

from .checker import exact_welfare, problems
from .conftest import load_round
from .generated import generated_round, wide_round
from .resampled import resampled
from .test_property import rounds


def greedy_welfare(doc):
    rnd, _ = parse_round(doc)
    assert rnd is not None
    mk = build_market(rnd)
    return best_greedy(mk).welfare(mk)


def test_large_path_with_lns_is_valid_and_not_below_greedy(monkeypatch):
    doc = load_round("small-11")
    monkeypatch.setattr(clearing, "FULL_MIP_COLUMNS", 0)
    res = clear(doc, time_limit=4.0)
    assert problems(doc, res) == []
    assert exact_welfare(doc, res) >= greedy_welfare(doc) - 1e-6
    assert res["stats"]["wall_s"] <= 4.0 + 1.0


def test_lns_beats_greedy_on_a_generated_round_and_its_bound_holds(monkeypatch):
    # seed 1: greedy is 7.7% below the optimum the full MIP proves
    doc = generated_round(1)
    exact = clear(doc, time_limit=30.0)
    assert exact["status"] == "optimal"
    monkeypatch.setattr(clearing, "FULL_MIP_COLUMNS", 0)
    res = clear(doc, time_limit=8.0)
    assert problems(doc, res) == []
    welfare = exact_welfare(doc, res)
    assert welfare > greedy_welfare(doc) + 1e-6
    assert welfare >= 0.97 * exact["welfare_cents"]
    assert res["bound_cents"] >= exact["welfare_cents"]  # the Lagrangian bound is a real bound
    assert res["stats"]["wall_s"] <= 8.0 + 1.0


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds())
def test_large_path_on_random_rounds_is_valid_and_never_below_greedy(doc):
    saved = clearing.FULL_MIP_COLUMNS
    clearing.FULL_MIP_COLUMNS = 0
    try:
        res = clear(doc, time_limit=3.0)
    finally:
        clearing.FULL_MIP_COLUMNS = saved
    assert problems(doc, res) == []
    assert exact_welfare(doc, res) >= greedy_welfare(doc) - 1e-6
    assert res["bound_cents"] >= res["welfare_cents"]


def test_clearing_writes_nothing_to_stdout(capfd):
    clear(load_round("small-11"))
    out, _ = capfd.readouterr()
    assert out == ""


def _result_of(doc, mk, alloc):
    """The engine's result document for an allocation of the whole round (for the checker)."""
    rnd, _ = parse_round(doc)
    assert rnd is not None
    piece = clearing._result_piece(
        mk, alloc, np.zeros((len(rnd.offers), rnd.slots)), "time_limit", alloc.welfare(mk)
    )
    piece["stats"] = {}
    return clearing.assemble(rnd, [piece], "HIGHS")


def test_switches_and_relocations_are_valid_and_never_below_the_incumbent():
    switched = 0
    for seed in (1, 5, 8):  # generated rounds where greedy leaves switches to make
        doc = generated_round(seed)
        rnd, _ = parse_round(doc)
        assert rnd is not None
        mk = build_market(rnd)
        best = best_greedy(mk)
        pairs = lns.switches(mk, best)
        assert pairs
        for w, s, _ in pairs:
            assert mk.b_group[w] == mk.b_group[s]
            if best.chosen[w] < 0 or (s != w and best.chosen[s] >= 0):
                continue  # an earlier switch changed the group
            cand = lns.switch(
                mk, best, w, s, seconds=2.0, gap=1e-4, valid=clearing._valid, restrict=clearing._restrict
            )
            assert cand.welfare(mk) >= best.welfare(mk) - 1e-6
            res = _result_of(doc, mk, cand)
            assert problems(doc, res) == []
            assert exact_welfare(doc, res) == round(cand.welfare(mk))
            switched += int(s != w and cand.chosen[s] >= 0)
            best = cand
    assert switched >= 3  # the sibling really replaces the winner


def test_switches_narrowed_to_few_bids_stay_valid(monkeypatch):
    monkeypatch.setattr(lns, "SWITCH_BIDS", 4)
    doc = generated_round(8)
    rnd, _ = parse_round(doc)
    assert rnd is not None
    mk = build_market(rnd)
    best = best_greedy(mk)
    for w, s, _ in lns.switches(mk, best)[:10]:
        if best.chosen[w] < 0 or (s != w and best.chosen[s] >= 0):
            continue
        freed, _ = lns._switch_freed(mk, best, w, s)
        assert w in freed and s in freed
        assert np.count_nonzero(best.chosen[freed] < 0) <= max(
            4 - np.count_nonzero(best.chosen[freed] >= 0), 1
        )
        cand = lns.switch(
            mk, best, w, s, seconds=2.0, gap=1e-4, valid=clearing._valid, restrict=clearing._restrict
        )
        assert cand.welfare(mk) >= best.welfare(mk) - 1e-6
        assert problems(doc, _result_of(doc, mk, cand)) == []
        best = cand


def _market(doc):
    """The round's market and greedy's best allocation on it."""
    rnd, _ = parse_round(doc)
    assert rnd is not None
    mk = build_market(rnd)
    return mk, best_greedy(mk)


def _improve(mk, start, seconds, **kw):
    """The search from `start` for `seconds` of real time, with the engine's checker."""
    return lns.improve(
        mk,
        start,
        deadline=time.perf_counter() + seconds,
        gap=1e-4,
        valid=clearing._valid,
        restrict=clearing._restrict,
        **kw,
    )


def _fake_clock(monkeypatch, clock):
    """`lns`'s clock reads `clock[0]` (the test moves it)."""

    class FakeTime:
        @staticmethod
        def perf_counter():
            return clock[0]

    monkeypatch.setattr(lns, "time", FakeTime)


def _wide_market(seed):
    doc = wide_round(seed, n_bids=60)
    return (doc, *_market(doc))


def test_a_move_too_big_for_its_time_keeps_only_the_placements_near_the_capacity_it_frees(monkeypatch):
    # wide windows: a freed bid has up to hundreds of start times, and a region's MIP over all of
    # them can be far beyond what HiGHS gets through in its seconds (28-34M non-zeros for 5 s on a
    # fuzzed round: 9-11 s, nothing found); over the limit, each freed bid keeps its award and the
    # placements with a source on the region's capacity
    doc, mk, best = _wide_market(3)
    seen = []
    real = lns.solve_mip_natural

    def spy(sub, **kw):
        seen.append(sub.n_places)
        return real(sub, **kw)

    monkeypatch.setattr(lns, "solve_mip_natural", spy)
    narrowed = 0
    for offers, a, b in lns.regions(mk, 24, 0):
        touch = lns._touch(mk, offers, a, b)
        nb = lns._free(mk, best, touch)
        if not nb.size:
            continue
        # the expected model, counted placement by placement
        full = near = 0
        freed = set(nb.tolist())
        for p in range(mk.n_places):
            bid = int(mk.p_bid[p])
            if bid not in freed:
                continue
            size = int(mk.p_kstart[p + 1] - mk.p_kstart[p]) * int(mk.p_end[p] - mk.p_start[p] + 2) + 3
            full += size
            if best.chosen[bid] == p or touch[mk.p_kstart[p] : mk.p_kstart[p + 1]].any():
                near += 1
        if near == int(np.isin(mk.p_bid, nb).sum()):
            continue  # nothing to narrow
        # room for half the full model in 2 s
        monkeypatch.setattr(lns, "SUB_NNZ_PER_SECOND", full / 2.0 / (2.0 + lns.SUB_OVERRUN_S))
        seen.clear()
        cand = lns._solve_region(mk, best, nb, 2.0, 1e-4, clearing._valid, clearing._restrict, touch)
        if seen:  # (or the narrowed model is still too big: dropped, the next test)
            assert seen == [near]
            narrowed += 1
        assert cand.welfare(mk) >= best.welfare(mk) - 1e-6
        assert problems(doc, _result_of(doc, mk, cand)) == []
        best = cand
    assert narrowed >= 3


def test_a_move_still_too_big_when_narrowed_is_not_tried(monkeypatch):
    doc, mk, best = _wide_market(3)
    monkeypatch.setattr(lns, "SUB_NNZ_PER_SECOND", 1)  # nothing fits

    def never(*_a, **_k):
        raise AssertionError("no MIP should be built")

    monkeypatch.setattr(lns, "solve_mip_natural", never)
    for offers, a, b in lns.regions(mk, 24, 0)[:10]:
        touch = lns._touch(mk, offers, a, b)
        nb = lns._free(mk, best, touch)
        assert lns._solve_region(mk, best, nb, 2.0, 1e-4, clearing._valid, clearing._restrict, touch) is best
    for w, s, _ in lns.switches(mk, best)[:5]:
        cand = lns.switch(
            mk, best, w, s, seconds=2.0, gap=1e-4, valid=clearing._valid, restrict=clearing._restrict
        )
        assert cand is best
    # re-source skips its MIP, but still inserts losers greedily (never below the incumbent)
    cand = lns.resource(mk, best, seconds=5.0, valid=clearing._valid, restrict=clearing._restrict)
    assert cand.welfare(mk) >= best.welfare(mk) - 1e-6
    assert problems(doc, _result_of(doc, mk, cand)) == []


def test_a_short_search_keeps_moving_until_its_margin(monkeypatch):
    # a 3 s search has a margin of 0.3 s (`MARGIN_SHARE`): moves start until 0.3 s before its
    # deadline, each sub-MIP limited to stop 0.15 s before it; with the fixed second of margin
    # it had until session 15, every limit was at least 0.5 s and the search stopped with a
    # third of its time left. The search's clock is a fake one that each sub-MIP moves on by
    # 0.2 s (HiGHS's real times made the test depend on the machine's load: a move that ran to
    # its limit left no room for another)
    mk, start = _market(generated_round(1))
    clock = [0.0]
    limits = []

    def sub_mip(sub, *, time_limit, gap, warm, options=None, cap=None, source_bounds=False):
        limits.append(time_limit)
        clock[0] += 0.2
        return MIPResult(False, warm, None, 0.2, 0.0)  # no gain: the incumbent back

    _fake_clock(monkeypatch, clock)
    monkeypatch.setattr(lns, "solve_mip_natural", sub_mip)
    lns.improve(mk, start, deadline=3.0, gap=1e-4, valid=clearing._valid, restrict=clearing._restrict)
    assert len(limits) >= 10
    assert min(limits) < 0.5  # moves in the last half second
    assert min(limits) >= 0.3 / 2 - 1e-9
    assert all(
        lim <= 3.0 - t - 0.15 + 1e-9 for lim, t in zip(limits, np.arange(len(limits)) * 0.2, strict=True)
    )
    assert clock[0] > 3.0 - 0.3  # it ran until its margin


def test_the_search_stops_at_once_when_its_start_meets_the_bound(monkeypatch):
    # a sub-market whose Lagrangian bound equals its start (proven optimal) gets no search
    mk, start = _market(generated_round(1))

    def never(*_a, **_k):
        raise AssertionError("no MIP should be built")

    monkeypatch.setattr(lns, "solve_mip_natural", never)
    best = _improve(mk, start, 5.0, bound=start.welfare(mk))
    assert best is start


def _lagrange_prices(mk, start, seconds=2.0):
    from auctions.engine.lagrange import lagrangian_bound

    return lagrangian_bound(mk, target=start.welfare(mk), seconds=seconds).lam


def test_repacks_free_each_bid_with_two_placements_stay_valid_and_gain(monkeypatch):
    # a re-pack frees every bid on its offers over the whole horizon, each with its award's
    # placement and its best at the pass's prices only (small enough for HiGHS to prove); the
    # result is valid, never below the incumbent, and on rounds where greedy is poor it gains
    gained = 0
    real = lns._solve_region
    seen = []

    def spy(mk_, best_, nb, seconds, gap, valid, restrict, touch, keep=None, options=None):
        seen.append((nb, keep, options))
        return real(mk_, best_, nb, seconds, gap, valid, restrict, touch, keep, options)

    for seed in (1, 5, 8):
        doc = generated_round(seed)
        mk, best = _market(doc)
        lam = _lagrange_prices(mk, best)
        for i in range(2):
            top = lns.top_placements(mk, lns.placement_values(mk, lns.repack_prices(lam, i)))
            for offers in lns.repack_units(mk, best):
                seen.clear()
                monkeypatch.setattr(lns, "_solve_region", spy)
                moves = lns.Moves(mk, valid=clearing._valid, restrict=clearing._restrict)
                move = lns.repack_move(mk, best, offers, top)
                cand = lns.repack(moves, best, move, seconds=2.0, gap=1e-4)
                monkeypatch.setattr(lns, "_solve_region", real)
                (nb, keep, options) = seen[0]
                # without HiGHS's restart (REPACK_OPTIONS): proves more of them in their time
                assert options is not None and options["mip_allow_restart"] is False
                on = np.isin(mk.k_offer, offers)
                # every winner drawing from the offers is freed
                drawing = np.unique(mk.p_bid[mk.k_place[on & (best.x > 0)]])
                assert set(drawing.tolist()) <= set(nb.tolist())
                for b in nb.tolist():
                    kept = set(np.flatnonzero(keep & (mk.p_bid == b)).tolist())
                    allowed = {int(best.chosen[b]), int(top[b])} - {-1}
                    assert kept <= allowed and len(kept) <= 2
                assert not (keep & ~np.isin(mk.p_bid, nb)).any()
                assert cand.welfare(mk) >= best.welfare(mk) - 1e-6
                res = _result_of(doc, mk, cand)
                assert problems(doc, res) == []
                assert exact_welfare(doc, res) == round(cand.welfare(mk))
                gained += cand.welfare(mk) > best.welfare(mk) + 1e-6
                best = cand
    assert gained >= 3


def test_repack_units_are_whole_models_that_free_few_enough_bids(monkeypatch):
    # a re-pack is one GPU model's offers, whole; a model that frees more than REPACK_BIDS bids is
    # left to the regions (on xlarge-41, 690-930 bids a model, re-packs of chunks of its offers
    # gained less than the regions in the same time: docs/engine-experiments.md, *Session 17*)
    mk, best = _market(generated_round(9, n_bids=200, n_offers=30))
    freed = [lns._free(mk, best, mk.o_model[mk.k_offer] == m).size for m in range(len(mk.models))]
    units = lns.repack_units(mk, best)
    assert [sorted(u.tolist()) for u in units] == [
        np.flatnonzero(mk.o_model == m).tolist() for m in range(len(mk.models))
    ]
    cut = sorted(freed)[1]  # the two models freeing the fewest bids stay
    monkeypatch.setattr(lns, "REPACK_BIDS", cut)
    units = lns.repack_units(mk, best)
    kept = [int(mk.o_model[u[0]]) for u in units]
    assert kept == [m for m in range(len(mk.models)) if freed[m] <= cut]
    assert 1 <= len(kept) < len(mk.models)
    # and a search whose models are all too big makes no re-pack
    monkeypatch.setattr(lns, "REPACK_BIDS", 0)

    def never(*_a, **_k):
        raise AssertionError("no re-pack should run")

    monkeypatch.setattr(lns, "repack", never)
    lam = _lagrange_prices(mk, best, seconds=0.5)
    out = _improve(mk, best, 2.0, lam=lam)
    assert out.welfare(mk) >= best.welfare(mk) - 1e-6


def test_repack_prices_are_seeded_offer_factors_around_the_lagrangian_s():
    rng = np.random.default_rng(0)
    lam = rng.uniform(0, 5, size=(6, 10))
    assert np.array_equal(lns.repack_prices(lam, 0), lam)
    for i in (1, 2, 7):
        a, b = lns.repack_prices(lam, i), lns.repack_prices(lam, i)
        assert np.array_equal(a, b)  # deterministic
        ratio = a / lam
        assert np.allclose(ratio, ratio[:, :1])  # one factor per offer
        assert (ratio >= 1 - lns.REPACK_JITTER - 1e-12).all() and (
            ratio <= 1 + lns.REPACK_JITTER + 1e-12
        ).all()
    assert not np.array_equal(lns.repack_prices(lam, 1), lns.repack_prices(lam, 2))


def test_sweep_prices_are_the_lagrangian_s_first_then_jittered_apart_from_the_re_packs():
    rng = np.random.default_rng(0)
    lam = rng.uniform(0, 5, size=(6, 10))
    assert np.array_equal(lns.sweep_prices(lam, 0), lam)
    later = [lns.sweep_prices(lam, k) for k in range(1, 6)]
    passes = [lns.repack_prices(lam, i) for i in range(50)]
    for k, a in enumerate(later, start=1):
        assert np.array_equal(a, lns.sweep_prices(lam, k))  # deterministic
        ratio = a / lam
        assert np.allclose(ratio, ratio[:, :1])  # one factor per offer, as a re-pack pass's
        assert (abs(ratio - 1) <= lns.REPACK_JITTER + 1e-12).all()
        assert not any(np.array_equal(a, b) for b in later[: k - 1] + passes)


def test_later_sweeps_offer_their_moves_other_top_placements(monkeypatch):
    # a move on a model small enough for re-packs frees each bid with its award and its top
    # placements only; the first sweep ranks them at the Lagrangian's prices, each later sweep at
    # prices of its own (`sweep_prices`), so a search stuck at a local optimum of its moves gets
    # other choices to make. The moves are faked and gain nothing: four sweeps, then the end
    mk, start = _market(generated_round(1))
    lam = _lagrange_prices(mk, start, seconds=0.5)
    clock = [0.0]
    sweep = [-1]
    kept: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []

    real_regions = lns.regions

    def regions(*a):
        sweep[0] += 1
        return real_regions(*a)

    class Fake(lns.Moves):
        def solve(self, best, nb, seconds, gap, touch, keep=None, options=None):
            clock[0] += 0.01
            if keep is not None and sweep[0] >= 0:
                kept.append((sweep[0], nb, keep.copy(), best.chosen.copy()))
            return best

    _fake_clock(monkeypatch, clock)
    monkeypatch.setattr(lns, "regions", regions)
    monkeypatch.setattr(lns, "resource", lambda mk_, inc, **k: inc)
    monkeypatch.setattr(lns, "Moves", Fake)
    lns.improve(
        mk, start, deadline=1e6, gap=1e-4, valid=clearing._valid, restrict=clearing._restrict, lam=lam
    )
    assert sweep[0] == 3
    top = max(lns.REGION_TOP, lns.SWITCH_TOP)
    ranks = [lns.placement_ranks(mk, lns.placement_values(mk, lns.sweep_prices(lam, k))) for k in range(4)]
    outside = 0  # placements kept in later sweeps that the Lagrangian's prices do not rank at the top
    for k, nb, keep, chosen in kept:
        assert not (keep & ~np.isin(mk.p_bid, nb)).any()
        ps = np.flatnonzero(keep)
        every = np.bincount(mk.p_bid[ps], minlength=mk.b_gpus.size) == np.diff(mk.b_pstart)
        ps = ps[(chosen[mk.p_bid[ps]] != ps) & ~every[mk.p_bid[ps]]]  # not an award, not all of a bid's
        assert (ranks[k][ps] < top).all()
        if k:
            outside += int((ranks[0][ps] >= top).sum())
    assert {k for k, *_ in kept} == {0, 1, 2, 3}
    assert outside > 0


def test_top_placements_is_each_bid_s_best_first_on_ties():
    mk, _ = _market(generated_round(2))
    rng = np.random.default_rng(1)
    values = rng.integers(0, 4, size=mk.n_places).astype(float)  # many ties
    top = lns.top_placements(mk, values)
    for b in range(mk.b_gpus.size):
        p0, p1 = int(mk.b_pstart[b]), int(mk.b_pstart[b + 1])
        if p0 == p1:
            assert top[b] == -1
        else:
            assert top[b] == p0 + int(np.argmax(values[p0:p1]))


def test_regions_of_models_small_enough_for_re_packs_free_bids_with_few_placements(monkeypatch):
    # where re-packs run (models that free at most REPACK_BIDS bids), a region frees each bid
    # with its award and its REGION_TOP best placements at the prices, not all of them (a switch
    # its SWITCH_TOP best, and the winner and sibling it is about all of theirs); on bigger
    # models (xlarge-41's) moves keep every placement
    mk, start = _market(generated_round(1))
    lam = _lagrange_prices(mk, start, seconds=0.5)
    real, real_regions = lns._solve_region, lns.regions
    calls = []
    sweep = [-1]

    def regions(*a):
        sweep[0] += 1
        return real_regions(*a)

    def spy(mk_, best_, nb, seconds, gap, valid, restrict, touch, keep=None, options=None):
        calls.append((best_.chosen.copy(), nb, keep, max(sweep[0], 0)))
        return real(mk_, best_, nb, seconds, gap, valid, restrict, touch, keep, options)

    def no_repack(mk_, best_, offers, top):  # straight to the sweeps
        return np.zeros(0, dtype=np.int64), np.zeros(mk_.n_sources, bool), np.zeros(mk_.n_places, bool)

    monkeypatch.setattr(lns, "_solve_region", spy)
    monkeypatch.setattr(lns, "regions", regions)
    monkeypatch.setattr(lns, "repack_move", no_repack)
    out = _improve(mk, start, 2.0, lam=lam)
    assert out.welfare(mk) >= start.welfare(mk) - 1e-6
    narrowed = [c for c in calls if c[2] is not None and c[1].size]
    assert narrowed
    for chosen, nb, keep, k in narrowed:
        # (ranked at the sweep's prices: `sweep_prices`)
        rank = lns.placement_ranks(mk, lns.placement_values(mk, lns.sweep_prices(lam, k)))
        assert not (keep & ~np.isin(mk.p_bid, nb)).any()
        ps = np.flatnonzero(keep)
        every = np.bincount(mk.p_bid[ps], minlength=mk.b_gpus.size) == np.diff(mk.b_pstart)
        top = max(lns.REGION_TOP, lns.SWITCH_TOP)
        assert ((rank[ps] < top) | (chosen[mk.p_bid[ps]] == ps) | every[mk.p_bid[ps]]).all()
        many = np.diff(mk.b_pstart)[nb] > top + 1  # bids that cannot keep all by rank and award
        assert every[nb][many].sum() <= 2  # only a switch's two
        full = np.isin(mk.p_bid, nb)
        assert keep.sum() <= full.sum()
    # fewer than all their placements (a switch among bids of few placements may keep all)
    assert sum(int(k.sum()) for _, _, k, _ in narrowed) < sum(
        int(np.isin(mk.p_bid, nb).sum()) for _, nb, _, _ in narrowed
    )
    calls.clear()
    monkeypatch.setattr(lns, "REPACK_BIDS", 0)
    _improve(mk, start, 1.0, lam=lam)
    assert calls and all(c[2] is None for c in calls)


def _solved(mk, base, nb):
    """A move from `base` freeing the bids `nb` with all their placements, solved to the end."""
    touch = np.ones(mk.n_sources, dtype=bool)
    return lns._solve_region(mk, base, nb, 10.0, 1e-9, clearing._valid, clearing._restrict, touch)


def _absorb(mk, best, base, found):
    return lns.absorb(
        mk, best, base, found, seconds=10.0, gap=1e-9, valid=clearing._valid, restrict=clearing._restrict
    )


def test_moves_made_from_an_older_incumbent_are_folded_in_and_add_up_when_apart():
    # two regions of different models from one incumbent, solved as helpers would solve them:
    # folding both in (the second onto the first's result) keeps both gains, exactly
    for seed in (1, 5, 8):
        doc = generated_round(seed)
        mk, base = _market(doc)
        found = []
        for offers, a, b in lns.regions(mk, 24, 0):
            nb = lns._freed(mk, base, offers, a, b)
            cand = _solved(mk, base, nb)
            if cand.welfare(mk) > base.welfare(mk) + 1 and all(
                mk.o_model[offers[0]] != m for m, _, _ in found
            ):
                found.append((mk.o_model[offers[0]], nb, cand))
            if len(found) == 2:
                break
        assert len(found) == 2
        (_, nb1, f1), (_, nb2, f2) = found
        if np.intersect1d(nb1, nb2).size:
            continue  # (a loser of a free group may be freed by both)
        now = _absorb(mk, base, base, f1)
        now = _absorb(mk, now, base, f2)
        gains = f1.welfare(mk) + f2.welfare(mk) - 2 * base.welfare(mk)
        assert now.welfare(mk) == pytest.approx(base.welfare(mk) + gains)
        res = _result_of(doc, mk, now)
        assert problems(doc, res) == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds(), st.data())
def test_folding_in_moves_that_overlap_is_valid_and_keeps_the_best_of_both(doc, data):
    # two moves from one incumbent that free any bids (overlapping or not): folded in one after
    # the other, the result is valid (the independent checker) and worth at least either move
    rnd, _ = parse_round(doc)
    assert rnd is not None
    mk = build_market(rnd)
    base = best_greedy(mk)
    n = mk.b_gpus.size
    picks = st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True)
    f1 = _solved(mk, base, np.array(sorted(data.draw(picks)), dtype=np.int64))
    f2 = _solved(mk, base, np.array(sorted(data.draw(picks)), dtype=np.int64))
    now = _absorb(mk, _absorb(mk, base, base, f1), base, f2)
    res = _result_of(doc, mk, now)
    assert problems(doc, res) == []
    assert now.welfare(mk) >= max(f1.welfare(mk), f2.welfare(mk)) - 1e-6


def test_a_search_with_helper_processes_hands_out_moves_and_stays_valid(monkeypatch):
    # workers=2: the large path's search solves its moves in two helper processes; the clearing
    # is valid, beats greedy where greedy is poor, and keeps its time limit
    made = []

    class Spy(lns.Moves):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)
            self.handed = 0

        def solve(self, best, *a, **k):
            self.handed += int(self.pool is not None and len(self.jobs) < self.slots)
            return super().solve(best, *a, **k)

    monkeypatch.setattr(lns, "Moves", Spy)
    monkeypatch.setattr(clearing, "FULL_MIP_COLUMNS", 0)
    doc = generated_round(1)
    res = clear(doc, time_limit=10.0, workers=2)
    assert problems(doc, res) == []
    assert exact_welfare(doc, res) > greedy_welfare(doc) + 1e-6
    assert res["stats"]["wall_s"] <= 10.0 + 1.0
    assert [m.slots for m in made] == [2]
    assert made[0].handed >= 5


def test_a_move_handed_to_a_helper_is_solved_with_the_options_it_was_handed(monkeypatch):
    # a re-pack handed to a helper process runs without HiGHS's restart there too
    # (REPACK_OPTIONS); the helper's side of `Moves.solve`, in this process
    mk, start = _market(generated_round(1))
    seen = []
    real = lns.solve_mip_natural

    def spy(sub, **kw):
        seen.append(kw["options"])
        return real(sub, **kw)

    monkeypatch.setattr(lns, "solve_mip_natural", spy)
    monkeypatch.setattr(lns, "_HELPER", {})
    lns._helper_init(mk, clearing._valid, clearing._restrict)
    nb = np.flatnonzero(start.chosen >= 0)[:5]
    touch = np.flatnonzero(np.isin(mk.p_bid[mk.k_place], nb))
    for options in (lns.REPACK_OPTIONS, None):
        lns._helper_region(start.x, nb, 2.0, 1e-4, touch, None, options)
    assert seen == [lns.REPACK_OPTIONS, lns.SUB_OPTIONS]


def test_a_search_whose_helper_dies_goes_on_in_its_own_process(monkeypatch):
    # a helper killed mid-search (out of memory, say): the search notices, carries on alone and
    # still returns a valid clearing at least as good as its start
    import os
    import signal

    class Killer(lns.Moves):
        def solve(self, best, *a, **k):
            out = super().solve(best, *a, **k)
            if self.pool is not None and self.jobs:
                for p in list(self.pool._processes.values()):
                    os.kill(p.pid, signal.SIGKILL)
            return out

    monkeypatch.setattr(lns, "Moves", Killer)
    doc = generated_round(1)
    mk, start = _market(doc)
    best = _improve(mk, start, 6.0, helpers=2)
    res = _result_of(doc, mk, best)
    assert problems(doc, res) == []
    assert best.welfare(mk) > start.welfare(mk) + 1e-6


def test_a_sweep_that_gained_stops_its_relocations_after_a_run_without_gain(monkeypatch):
    # a sweep whose regions or switches gained ends its relocations after RELOC_DRY in a row
    # that gain nothing (its re-pack pass and the next sweep then pay more: on large-31 1.4k
    # cents a second for relocations against 6-19k for the rest); a sweep that has gained
    # nothing tries every relocation before the search counts it as stalled. The moves are
    # faked: the search's first gains a GPU-slot's worth, every other nothing
    mk, start = _market(generated_round(1))
    clock = [0.0]
    log: list[str] = []

    real_regions, real_freed = lns.regions, lns._switch_freed

    def regions(*a):
        log.append("sweep")
        return real_regions(*a)

    def switch_freed(mk_, best, w, s):
        log.append("reloc" if w == s else "switch")
        return real_freed(mk_, best, w, s)

    class Fake(lns.Moves):
        def solve(self, best, nb, seconds, gap, touch, keep=None, options=None):
            clock[0] += 0.01
            if "gain" in log:
                return best
            log.append("gain")
            x = best.x.copy()
            x[np.argmax(mk.k_value)] += 1  # (not valid: the test is of the search's choices)
            return lns.Allocation(x, best.chosen)

    _fake_clock(monkeypatch, clock)
    monkeypatch.setattr(lns, "regions", regions)
    monkeypatch.setattr(lns, "_switch_freed", switch_freed)
    monkeypatch.setattr(lns, "resource", lambda mk_, inc, **k: inc)
    monkeypatch.setattr(lns, "Moves", Fake)
    monkeypatch.setattr(lns, "RELOC_DRY", 3)
    best = lns.improve(mk, start, deadline=1e6, gap=1e-4, valid=clearing._valid, restrict=clearing._restrict)
    sweeps = " ".join(log).split("sweep")[1:]
    relocs = [s.split().count("reloc") for s in sweeps]
    every = len([1 for w, s, _ in lns.switches(mk, best) if w == s])
    assert "gain" in sweeps[0] and every > 3
    assert relocs[0] == 3
    # then a whole cycle of shifted sweeps without a gain: the first tries every relocation,
    # the others none (each tried since the last gain)
    assert len(sweeps) == 1 + 4
    assert relocs[1:] == [every, 0, 0, 0]


def _scarce_switch_round():
    """`w` (model A) wins alone on A's only offer; its XOR sibling `s` (model B, idle) is worth
    less in isolation, but `u`, a loser on A worth more than `s`, could then take A: the best
    clearing is `s` and `u` (14,400 + 15,200 cents against `w`'s 16,000)."""

    def offer(oid, model):
        return {
            "id": oid, "team": "sell", "cluster": "c1", "gpu_model": model, "gpus": 8,
            "start_slot": 0, "end_slot": 10, "reserve_cents_per_gpu_hour": 100,
        }  # fmt: skip

    def bid(bid_id, model, limit, group):
        return {
            "id": bid_id, "team": f"t-{bid_id}", "gpu_models": [model], "gpus": 8, "min_gpus": 8,
            "duration_slots": 10, "earliest_start_slot": 0, "latest_end_slot": 10,
            "colocate": False, "limit_cents_per_gpu_hour": limit, "xor_group": group,
        }  # fmt: skip

    return {
        "format": "gridx.round/v1", "round": "scarce", "start": "2026-12-01T00:00:00Z",
        "slot_minutes": 60, "slots": 10, "currency": "usd",
        "offers": [offer("oa", "A"), offer("ob", "B")],
        "bids": [bid("w", "A", 300, "g"), bid("s", "B", 280, "g"), bid("u", "A", 290, "h")],
    }  # fmt: skip


def _scarce_switch():
    """The round above, greedy's clearing (`w` alone), the bids' indices and prices that make
    A's capacity dear (195 cents a GPU-slot: `w` then earns 5 a GPU-slot over them, `s` 180)."""
    doc = _scarce_switch_round()
    mk, best = _market(doc)
    ids = [b.id for b in mk.rnd.bids]
    w, s, u = (ids.index(i) for i in ("w", "s", "u"))
    assert best.chosen[w] >= 0 and best.chosen[s] < 0 and best.chosen[u] < 0
    lam = np.zeros((len(mk.rnd.offers), mk.rnd.slots))
    lam[mk.o_model == mk.models.index("A")] = 195.0
    return doc, mk, best, lam, (w, s, u)


def test_a_sibling_worth_less_alone_but_more_at_the_prices_is_a_switch():
    # the LP's reduced costs, not isolated values, say which of an XOR group's bids should win:
    # a sibling on idle capacity can be worth less alone than the winner on scarce capacity
    # and still be the better choice (on a large-31 clearing's end, 7 such pairs, 3 of them
    # gaining 7.2k cents in 6.8 s, where the search's own switches were tried)
    doc, mk, best, lam, (w, s, u) = _scarce_switch()
    assert (w, s) not in [pr[:2] for pr in lns.switches(mk, best)]
    priced = {pr[:2]: pr[2] for pr in lns.switches(mk, best, lam)}
    # s: 180 cents a GPU-slot at no price; w's award: 200 - 195
    assert priced[(w, s)] == pytest.approx((180 - 5) * 8 * 10)
    cand = lns.switch(
        mk, best, w, s, seconds=5.0, gap=1e-6, valid=clearing._valid, restrict=clearing._restrict
    )
    assert sorted(np.flatnonzero(cand.chosen >= 0).tolist()) == sorted([s, u])
    res = _result_of(doc, mk, cand)
    assert problems(doc, res) == []
    assert exact_welfare(doc, res) == 14_400 + 15_200


@pytest.mark.parametrize("priced", [True, False])
def test_the_search_makes_priced_switches_given_prices(monkeypatch, priced):
    # neither a re-pack nor a region can make that switch (`s`'s group is held by `w`, on
    # another model): only the priced switch finds the better clearing
    monkeypatch.setattr(lns, "PRICED_SWITCHES", priced)
    _, mk, best, lam, (w, s, u) = _scarce_switch()
    out = lns.improve(
        mk,
        best,
        deadline=time.perf_counter() + 20.0,
        gap=1e-6,
        valid=clearing._valid,
        restrict=clearing._restrict,
        lam=lam,
    )
    assert out.welfare(mk) == (14_400 + 15_200 if priced else 16_000)


def test_source_room_is_the_least_capacity_left_over_each_sources_window():
    mk, _ = _market(generated_round(3))
    cap = np.random.default_rng(0).integers(0, 65, size=(mk.o_gpus.size, mk.rnd.slots))
    room = solve.source_room(mk, cap)
    starts, ends = mk.p_start[mk.k_place], mk.p_end[mk.k_place]
    assert room.tolist() == [int(cap[o, a:b].min()) for o, a, b in zip(mk.k_offer, starts, ends, strict=True)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds(), st.randoms(use_true_random=False))
def test_source_bounds_on_the_capacity_left_cut_off_no_clearing(doc, rnd):
    # a sub-MIP's capacity is what the fixed awards leave (any amount per offer and slot): the
    # rows `x <= min(ub, room) z` tighten its relaxation but every clearing of it still fits
    rd, _ = parse_round(doc)
    assert rd is not None
    mk = build_market(rd)
    assume(mk.n_places > 0)
    cap = np.array([[rnd.randint(0, g) for _ in range(rd.slots)] for g in mk.o_gpus.tolist()])
    found = [
        solve.solve_mip_natural(mk, time_limit=None, gap=0.0, warm=None, cap=cap, source_bounds=sb)
        for sb in (False, True)
    ]
    assert all(f.optimal for f in found)
    plain, bounded = (float(f.x @ mk.k_value) for f in found)
    assert bounded == pytest.approx(plain, abs=1e-6)
    # and what it found fits the capacity left
    used = lns._usage(mk, found[1].x, np.arange(mk.b_gpus.size))
    assert (used <= cap).all()


def test_resampled_rounds_are_valid_rounds_of_the_same_shape():
    # the rounds that check engine changes on inputs it was not tuned on (docs/engine-experiments.md)
    doc = load_round("medium-21")
    out = resampled(doc, 2)
    rnd, found = parse_round(out)
    assert rnd is not None and found == []
    assert [b["id"] for b in out["bids"]] == [b["id"] for b in doc["bids"]]
    for old, new in zip(doc["bids"], out["bids"], strict=True):
        width = old["latest_end_slot"] - old["earliest_start_slot"]
        assert new["latest_end_slot"] - new["earliest_start_slot"] == width
        assert abs(new["earliest_start_slot"] - old["earliest_start_slot"]) <= 12
        assert (
            abs(new["limit_cents_per_gpu_hour"] - old["limit_cents_per_gpu_hour"])
            <= 0.1 * old["limit_cents_per_gpu_hour"] + 0.5
        )
    assert out != resampled(doc, 3) and out == resampled(doc, 2)
