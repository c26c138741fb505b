"""The full MIP's handover to the search (`solve.Handover`, `clearing.clear_component`): a full MIP
still far from its bound after its share of the time is interrupted and the search goes on from
its incumbent; one that converges keeps its time and its proof."""

from __future__ import annotations

import pytest

import auctions.engine.clearing as clearing
import auctions.engine.solve as solve
from auctions.engine import clear
from auctions.engine.components import components
from auctions.engine.formulation import build_market, flow_lp
from auctions.engine.heuristics import best_greedy

from .checker import exact_welfare, problems
from .conftest import load_round
from .generated import generated_round
from .test_build import parsed


def largest_market(doc):
    return build_market(max(components(parsed(doc)), key=lambda p: len(p.bids)))


def test_a_mip_above_the_handover_gap_is_interrupted():
    # medium-21's MIP needs ~20 s to prove; asked for a 0.01% gap after 1 s, HiGHS stops there
    # (whether it has an incumbent by then depends on the machine: not asserted)
    mk = largest_market(load_round("medium-21"))
    hand = solve.Handover(after_s=1.0, max_gap=1e-4, floor=0.0)
    wn = solve.WholeNatural(mk, time_limit=60.0, gap=1e-4, handover=hand)
    wn.h.run()
    assert wn.h.getModelStatus().name == "kInterrupt"
    assert wn.interrupted()
    # the LP can still run in the same instance afterwards (the clearing skips it: the
    # Lagrangian gives the bound and prices of a handed-over sub-market)
    lp = wn.lp(time_limit=30.0)
    assert lp.optimal


def test_a_mip_within_the_handover_gap_keeps_its_time_and_proves_optimality():
    mk = largest_market(load_round("small-12"))
    hand = solve.Handover(after_s=0.0, max_gap=1.0, floor=0.0)
    wn = solve.WholeNatural(mk, time_limit=30.0, gap=0.0, handover=hand)
    mip = wn.mip()
    assert mip.optimal
    assert not wn.interrupted()
    assert round(float(mip.x @ mk.k_value)) == 517776


def test_the_handover_counts_the_welfare_already_held():
    # with the floor above the MIP's own bound there is no gap left to close: never interrupted
    # (the MIP's bound comes from the LP without the source bounds, which the prices' LP has)
    mk = largest_market(load_round("small-11"))
    lp = solve.solve_lp(flow_lp(mk), solver="HIGHS", time_limit=30.0, source_bounds=False)
    hand = solve.Handover(after_s=0.0, max_gap=0.0, floor=lp.objective + 1.0)
    wn = solve.WholeNatural(mk, time_limit=30.0, gap=0.0, handover=hand)
    assert wn.mip().optimal


def test_an_unconverged_full_mip_hands_its_time_to_the_search(monkeypatch):
    # seed 1: greedy is 7.7% below the optimum; every MIP is handed over at once, so what the
    # clearing gains on greedy comes from the search (99.5% of the optimum within 3 s here)
    doc = generated_round(1)
    exact = clear(doc, time_limit=30.0)
    assert exact["status"] == "optimal"
    monkeypatch.setattr(clearing, "SEARCH_MIN_COLUMNS", 0)
    monkeypatch.setattr(clearing, "HANDOVER_SHARE", 0.0)
    monkeypatch.setattr(clearing, "HANDOVER_GAP", 0.0)
    res = clear(doc, time_limit=8.0)
    assert problems(doc, res) == []
    mk = largest_market(doc)
    assert exact_welfare(doc, res) > best_greedy(mk).welfare(mk) + 1e-6
    assert exact_welfare(doc, res) >= 0.97 * exact["welfare_cents"]
    assert res["bound_cents"] >= exact["welfare_cents"]
    assert res["stats"]["wall_s"] <= 8.0 + 1.0


@pytest.mark.parametrize(("name", "welfare"), [("small-11", 1332232), ("small-12", 517776)])
def test_a_converging_mip_is_not_handed_over(monkeypatch, name, welfare):
    # the handover on every size: rounds HiGHS proves early keep their proof
    monkeypatch.setattr(clearing, "SEARCH_MIN_COLUMNS", 0)
    doc = load_round(name)
    res = clear(doc, time_limit=10.0)
    assert res["status"] == "optimal"
    assert res["welfare_cents"] == welfare
    assert problems(doc, res) == []
