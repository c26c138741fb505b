"""The offline model-MIP bound (tests/engine/model_bound.py) holds and is no weaker than the LP."""

from __future__ import annotations

import pytest

from auctions.engine import clear
from auctions.engine.components import components
from auctions.engine.formulation import build_market
from auctions.engine.rounds import parse_round

from .generated import generated_round
from .model_bound import model_bound


@pytest.mark.parametrize("seed", [1, 3])
def test_model_bound_is_between_the_optimum_and_the_lp_bound(seed):
    doc = generated_round(seed)
    exact = clear(doc, time_limit=30.0)
    assert exact["status"] == "optimal"
    rnd, _ = parse_round(doc)
    assert rnd is not None
    lp = bound = 0.0
    for part in components(rnd):
        if part.offers:
            out = model_bound(build_market(part), seconds=10.0)
            lp += out["lp"]
            bound += out["bound"]
    assert bound >= exact["welfare_cents"] - 1e-6 * exact["welfare_cents"]
    assert bound <= lp * (1 + 1e-6)
