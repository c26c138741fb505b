"""The Lagrangian bound's fast segment sort gives exactly lexsort's order, ties and near-ties
included, and the bound it feeds still holds; so do the offline LP bounds (`lp_bound`)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auctions.engine import clear
from auctions.engine.formulation import build_market
from auctions.engine.lagrange import _by_place_then_value, _evaluate, lagrangian_bound, placement_values
from auctions.engine.rounds import parse_round

from .brute import optimum
from .generated import generated_round
from .lp_bound import lp_bound
from .test_property import rounds


@st.composite
def segments(draw):
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=30))
    place = np.repeat(np.arange(len(sizes)), sizes)
    # few distinct values (exact ties), huge and tiny magnitudes (near-ties the scaled key
    # cannot separate), and a spread that makes the key's fraction coarse
    base = draw(st.sampled_from([0.0, 1.0, 1e9]))
    vals = draw(
        st.lists(
            st.one_of(
                st.sampled_from([0.0, 1.0, -3.5]),
                st.floats(-1e6, 1e6, allow_nan=False),
                st.integers(0, 3).map(lambda i: 1.0 + i * 1e-13),
            ),
            min_size=place.size,
            max_size=place.size,
        )
    )
    return place.astype(np.int64), base + np.array(vals)


@settings(max_examples=400, deadline=None)
@given(segments())
def test_segment_sort_is_lexsort_exactly(case):
    place, a = case
    assert np.array_equal(_by_place_then_value(place, a), np.lexsort((-a, place)))


def test_segment_sort_of_values_closer_than_the_key_resolves_is_still_exact():
    # 2e5 placements leave the scaled key ~3e-11 of the spread: 1e-12 apart look equal to it,
    # and that one placement is re-sorted
    place = np.repeat(np.arange(200_000), 2)
    a = np.zeros(place.size)
    a[-1] = 1e-12
    a[0] = 1.0
    assert np.array_equal(_by_place_then_value(place, a), np.lexsort((-a, place)))


def test_lagrangian_bound_holds_against_the_proven_optimum():
    doc = generated_round(1)
    exact = clear(doc, time_limit=30.0)
    assert exact["status"] == "optimal"
    rnd, _ = parse_round(doc)
    mk = build_market(rnd)
    lag = lagrangian_bound(mk, target=0.0, seconds=30.0, max_iter=200)
    assert lag.bound >= exact["welfare_cents"] - 1e-6
    assert lag.iterations > 1


@pytest.mark.parametrize("seed", [2, 3])
def test_offline_lp_bounds_lie_between_the_optimum_and_the_engine_lp(seed):
    doc = generated_round(seed)
    exact = clear(doc, time_limit=30.0)
    assert exact["status"] == "optimal"
    rnd, _ = parse_round(doc)
    assert rnd is not None
    weak, strong = lp_bound(rnd), lp_bound(rnd, strong=True)
    # each relaxation bounds the optimum, the one with source bounds (`--strong`) no less
    # tightly; the engine's reported bound is the tighter of its MIP dual bound and that LP
    assert exact["welfare_cents"] - 1e-6 <= strong <= weak + 1e-6
    assert exact["bound_cents"] <= strong + 1.0
    if seed == 3:
        # bids of up to 32 GPUs on offers of 8-64: the plain LP takes a small offer's whole
        # capacity for a fraction of a placement
        assert strong < weak * (1 - 0.02)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds())
def test_the_strong_lp_bound_lies_between_the_optimum_and_the_lp_bound(doc):
    # `lp_bound --strong` (the LP the engine prices with): the source bounds
    # x <= ub z cut off only fractional points, so the bound still holds, and it is never weaker
    rnd, _ = parse_round(doc)
    assert rnd is not None
    best = float(optimum(doc))
    strong, weak = lp_bound(rnd, strong=True), lp_bound(rnd)
    assert best - 1e-6 * max(best, 1.0) <= strong <= weak + 1e-6 * max(weak, 1.0)


@pytest.mark.parametrize("seed", [1, 5])
def test_placement_values_are_what_the_lagrangian_maximises(seed):
    # the re-packs of the search (`lns.repack`) take each bid's best placement at these values:
    # they are the values the Lagrangian's exact per-group choice maximises, so L(lam) is the
    # priced capacity plus, per XOR group, the best of them (or 0)
    doc = generated_round(seed)
    rnd, _ = parse_round(doc)
    assert rnd is not None
    mk = build_market(rnd)
    rng = np.random.default_rng(seed)
    for lam in (np.zeros((len(rnd.offers), rnd.slots)), rng.uniform(0, 3, size=(len(rnd.offers), rnd.slots))):
        vals = placement_values(mk, lam)
        bound, _, _, bid_best = _evaluate(mk, lam)
        per_bid = np.full(mk.b_gpus.size, -np.inf)
        np.maximum.at(per_bid, mk.p_bid, vals)
        has = mk.b_pstart[1:] > mk.b_pstart[:-1]
        assert np.allclose(np.maximum(per_bid[has], 0), np.maximum(bid_best[has], 0))
        per_group = np.zeros(mk.n_groups)
        np.maximum.at(per_group, mk.b_group[mk.p_bid], vals)
        assert bound == pytest.approx(float((lam.sum(axis=1) * mk.o_gpus).sum() + per_group.sum()))
        if not lam.any():
            # unpriced, a placement's value is its best fill's welfare: at most its isolated best
            assert (vals <= mk.p_best + 1e-6).all()
