"""`pricing.price_needed` (the price a losing bid would have needed) against the rule written
placement by placement in plain Python, on Hypothesis rounds and on wide windows with random unit
prices (ties included)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auctions.engine import pricing
from auctions.engine.formulation import Market, build_market
from auctions.engine.rounds import parse_round

from .generated import wide_round
from .test_property import rounds


def loop_price_needed(mk: Market, b: int, cum: np.ndarray) -> int | None:
    """The rule in plain Python, one placement at a time (the reference): its sources by charge
    per GPU (ties by source), GPUs from the cheapest until `min_gpus`, cost rounded up per
    GPU-slot; the cheapest placement that can get `min_gpus`."""
    need, dur = int(mk.b_min[b]), int(mk.b_dur[b])
    best: int | None = None
    for p in range(int(mk.b_pstart[b]), int(mk.b_pstart[b + 1])):
        s, e = int(mk.p_start[p]), int(mk.p_end[p])
        charged = sorted(
            (int(cum[int(mk.k_offer[k]), e] - cum[int(mk.k_offer[k]), s]), k)
            for k in range(int(mk.p_kstart[p]), int(mk.p_kstart[p + 1]))
        )
        got = cost = 0
        for w, k in charged:
            take = min(int(mk.k_ub[k]), need - got)
            if take <= 0:
                break
            got += take
            cost += take * w
        if got < need:
            continue
        per = -(-cost // (need * dur))
        best = per if best is None else min(best, per)
    return best


def _check_every_bid(doc, seed: int, top: int) -> int:
    rnd, _ = parse_round(doc)
    assert rnd is not None
    mk = build_market(rnd)
    gen = np.random.default_rng(seed)
    prices = gen.integers(0, top, size=(len(rnd.offers), rnd.slots)).astype(np.int64)
    cum = pricing.window_charges(prices)
    priced = 0
    for b in range(len(rnd.bids)):
        got = pricing.price_needed(mk, b, cum)
        assert got == loop_price_needed(mk, b, cum), rnd.bids[b].id
        priced += got is not None
    return priced


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds(), st.integers(0, 2**32 - 1), st.sampled_from([2, 5, 400]))
def test_price_needed_equals_the_per_placement_loop_on_random_rounds(doc, seed, top):
    _check_every_bid(doc, seed, top)


def test_price_needed_equals_the_per_placement_loop_on_wide_windows():
    # hundreds of start times per bid and several sources per placement; few distinct prices, so
    # that sources of equal charge (ties) are common
    priced = 0
    for seed in (2, 3, 7):
        priced += _check_every_bid(wide_round(seed, n_bids=60), seed, 3)
    assert priced > 100
