"""Hypothesis: on tiny random rounds the engine is valid, optimal (brute force) and deterministic."""

from __future__ import annotations

import copy
import random
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auctions.engine import clear, dumps_result, merge, split

from .brute import optimum
from .checker import problems

MODELS = ["A100", "H100"]
CLUSTERS = ["c1", "c2"]


@st.composite
def rounds(draw: st.DrawFn, slot_minutes: int = 60) -> dict[str, Any]:
    slots = draw(st.integers(3, 6))
    offers = []
    for i in range(draw(st.integers(1, 3))):
        s = draw(st.integers(0, slots - 1))
        offers.append(
            {
                "id": f"o{i}",
                "team": "t",
                "cluster": draw(st.sampled_from(CLUSTERS)),
                "gpu_model": draw(st.sampled_from(MODELS)),
                "gpus": draw(st.integers(1, 3)),
                "start_slot": s,
                "end_slot": draw(st.integers(s + 1, slots)),
                "reserve_cents_per_gpu_hour": draw(st.integers(0, 10)),
            }
        )
    bids = []
    for i in range(draw(st.integers(1, 8))):
        es = draw(st.integers(0, slots - 1))
        le = draw(st.integers(es + 1, slots))
        gpus = draw(st.integers(1, 3))
        bids.append(
            {
                "id": f"b{i}",
                "team": "t",
                "gpu_models": draw(st.lists(st.sampled_from(MODELS), min_size=1, max_size=2, unique=True)),
                "gpus": gpus,
                "min_gpus": draw(st.integers(1, gpus)),
                "duration_slots": draw(st.integers(1, le - es)),
                "earliest_start_slot": es,
                "latest_end_slot": le,
                "colocate": draw(st.booleans()),
                "limit_cents_per_gpu_hour": draw(st.integers(0, 15)),
                "xor_group": draw(st.sampled_from([None, None, "g1", "g2"])),
            }
        )
    return {
        "format": "gridx.round/v1",
        "round": "h",
        "start": "2026-12-01T00:00:00Z",
        "slot_minutes": slot_minutes,
        "slots": slots,
        "currency": "usd",
        "offers": offers,
        "bids": bids,
    }


def no_stats(result: dict[str, Any]) -> str:
    r = dict(result)
    r.pop("stats")
    return dumps_result(r)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds())
def test_engine_welfare_equals_the_brute_force_optimum(doc):
    result = clear(doc, gap=0.0)
    assert problems(doc, result) == []
    assert result["status"] == "optimal"
    assert Fraction(result["welfare_cents"]) == optimum(doc)
    assert result["bound_cents"] >= result["welfare_cents"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds(), st.randoms(use_true_random=False))
def test_shuffling_bids_and_offers_changes_nothing_but_stats(doc, rnd: random.Random):
    shuffled = copy.deepcopy(doc)
    rnd.shuffle(shuffled["bids"])
    rnd.shuffle(shuffled["offers"])
    assert no_stats(clear(shuffled)) == no_stats(clear(doc))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds())
def test_split_then_merge_equals_clear(doc):
    assert no_stats(merge(doc, [clear(p) for p in split(doc)])) == no_stats(clear(doc))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds(slot_minutes=15))
def test_quarter_hour_slots_keep_payments_rational_and_budget_balanced(doc):
    # hours are not whole here: payments round down, reserves round up, and still IR + no deficit
    result = clear(doc)
    assert problems(doc, result) == []
    assert sum(a["payment_cents"] for a in result["awards"]) >= sum(
        o["revenue_cents"] for o in result["offers"]
    )
