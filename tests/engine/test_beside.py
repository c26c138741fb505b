"""The Lagrangian of a large sub-market with wide windows and no LP guide, computed in a process
of its own beside the order search (`clearing._Beside`): the same prices and bound as computed
here, a clearing that uses them, and a failure that only means computing them here."""

from __future__ import annotations

import math
import multiprocessing

import auctions.engine.clearing as clearing
from auctions.engine import clear
from auctions.engine.components import components
from auctions.engine.formulation import build_market
from auctions.engine.heuristics import greedy_orders
from auctions.engine.lagrange import lagrangian_bound
from auctions.engine.rounds import parse_round

from .checker import exact_welfare, problems
from .generated import wide_round


def test_a_lagrangian_computed_beside_is_the_one_computed_here():
    rnd, _ = parse_round(wide_round(3, n_bids=120, n_offers=20))
    assert rnd is not None
    mk = build_market(rnd)
    target = greedy_orders(mk)[0].welfare(mk)
    there = clearing._Beside(lagrangian_bound, mk, target=target, seconds=60.0).result()
    here = lagrangian_bound(mk, target=target, seconds=60.0)
    assert there is not None
    assert there.iterations == here.iterations
    assert there.bound == here.bound
    assert (there.lam == here.lam).all() and (there.score == here.score).all()
    assert multiprocessing.active_children() == []


def test_a_process_beside_that_fails_answers_none():
    assert clearing._Beside(math.sqrt, -1.0).result() is None  # (ValueError there)
    assert multiprocessing.active_children() == []


def test_a_large_wide_clearing_without_the_guide_takes_its_lagrangian_from_beside(monkeypatch):
    # forced onto the large path (wide windows), the LP guide out of reach: the Lagrangian runs
    # beside the order search; the clearing is valid, its bound is that Lagrangian's (the
    # target: greedy's floor, as the order search had not run when it started), nothing is left
    # running
    doc = wide_round(3, n_bids=120, n_offers=20)
    monkeypatch.setattr(clearing, "FULL_MIP_COLUMNS", 0)
    monkeypatch.setattr(clearing, "GUIDE_NNZ_PER_SECOND", 0)
    made = []
    real = clearing._Beside

    def spy(*a, **k):
        made.append(a[0])
        return real(*a, **k)

    monkeypatch.setattr(clearing, "_Beside", spy)
    res = clear(doc, time_limit=20.0, workers=2)
    rnd, _ = parse_round(doc)
    assert rnd is not None
    parts = [build_market(p) for p in components(rnd)]
    parts = [mk for mk in parts if mk.n_places]
    assert made == [lagrangian_bound] * len(parts)  # (its sub-markets, one after the other here)
    assert problems(doc, res) == []
    assert multiprocessing.active_children() == []
    bound = sum(
        math.ceil(lagrangian_bound(mk, target=greedy_orders(mk)[0].welfare(mk), seconds=60.0).bound + 1e-6)
        for mk in parts
    )
    assert exact_welfare(doc, res) <= res["bound_cents"] <= bound
