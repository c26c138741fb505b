"""`pricing.price_needed` (the price a losing bid would have needed) against the per-placement loop
it replaced, on Hypothesis rounds and on wide windows with random unit prices (ties included)."""

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
    """The previous implementation, one placement at a time (kept as the reference)."""
    p0, p1 = int(mk.b_pstart[b]), int(mk.b_pstart[b + 1])
    if p0 == p1:
        return None
    k0, k1 = int(mk.p_kstart[p0]), int(mk.p_kstart[p1])
    ks = np.arange(k0, k1)
    o = mk.k_offer[ks]
    pl = mk.k_place[ks]
    w = cum[o, mk.p_end[pl]] - cum[o, mk.p_start[pl]]
    order = np.lexsort((w, pl))
    ks_sorted, w_sorted, pl_sorted = ks[order], w[order], pl[order]
    best: int | None = None
    need = int(mk.b_min[b])
    d = int(mk.b_dur[b])
    for p in range(p0, p1):
        sel = pl_sorted == p
        ub = mk.k_ub[ks_sorted[sel]]
        ws = w_sorted[sel]
        before = np.cumsum(ub) - ub
        take = np.clip(need - before, 0, ub)
        if take.sum() < need:
            continue
        cost = int((take * ws).sum())
        per = pricing.ceil_div(cost, need * d)
        if best is None or per < best:
            best = per
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
