"""The large-round path (Lagrangian bound + large neighbourhood search) on a small round, and the
engine's silence on stdout."""

from __future__ import annotations

import auctions.engine.clearing as clearing
from auctions.engine import clear
from auctions.engine.formulation import build_market
from auctions.engine.heuristics import best_greedy
from auctions.engine.rounds import parse_round

from .checker import exact_welfare, problems
from .conftest import load_round


def test_large_path_with_lns_is_valid_and_not_below_greedy(monkeypatch):
    doc = load_round("small-11")
    monkeypatch.setattr(clearing, "FULL_MIP_COLUMNS", 0)
    res = clear(doc, time_limit=4.0)
    assert problems(doc, res) == []
    rnd, _ = parse_round(doc)
    assert rnd is not None
    mk = build_market(rnd)
    assert exact_welfare(doc, res) >= best_greedy(mk).welfare(mk) - 1e-6
    assert res["stats"]["wall_s"] <= 4.0 + 1.0


def test_clearing_writes_nothing_to_stdout(capfd):
    clear(load_round("small-11"))
    out, _ = capfd.readouterr()
    assert out == ""
