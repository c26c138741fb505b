"""Malformed rounds give status infeasible_input with every problem and its path, never a traceback."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from auctions.engine import clear

from .checker import problems


def bad(doc: dict[str, Any]) -> list[str]:
    result = clear(doc)
    assert result["status"] == "infeasible_input"
    assert result["awards"] == []
    assert result["message"] == "\n".join(result["problems"])
    return list(result["problems"])


def test_a_missing_key_is_named_with_its_path(tiny):
    doc = copy.deepcopy(tiny)
    del doc["bids"][1]["min_gpus"]
    del doc["slots"]
    assert bad(doc) == ["slots: missing", "bids[1].min_gpus: missing"]


@pytest.mark.parametrize(
    ("where", "key", "value", "path"),
    [
        ("bids", "gpus", "8", "bids[0].gpus"),
        ("bids", "gpus", 8.0, "bids[0].gpus"),
        ("bids", "gpus", True, "bids[0].gpus"),
        ("bids", "colocate", "yes", "bids[0].colocate"),
        ("bids", "gpu_models", "H100-SXM-80GB", "bids[0].gpu_models"),
        ("bids", "gpu_models", [], "bids[0].gpu_models"),
        ("bids", "xor_group", 3, "bids[0].xor_group"),
        ("offers", "cluster", None, "offers[0].cluster"),
        ("offers", "reserve_cents_per_gpu_hour", 1.5, "offers[0].reserve_cents_per_gpu_hour"),
    ],
)
def test_wrong_types_are_reported(tiny, where, key, value, path):
    doc = copy.deepcopy(tiny)
    doc[where][0][key] = value
    assert any(p.startswith(path + ":") for p in bad(doc))


@pytest.mark.parametrize(
    ("where", "key", "value"),
    [
        ("offers", "gpus", -8),
        ("offers", "gpus", 0),
        ("offers", "reserve_cents_per_gpu_hour", -1),
        ("bids", "gpus", -1),
        ("bids", "min_gpus", 0),
        ("bids", "duration_slots", 0),
        ("bids", "limit_cents_per_gpu_hour", -5),
    ],
)
def test_negative_counts_and_prices_are_reported(tiny, where, key, value):
    doc = copy.deepcopy(tiny)
    doc[where][2][key] = value
    assert any(p.startswith(f"{where}[2].{key}:") for p in bad(doc))


def test_windows_outside_the_horizon_are_reported(tiny):
    doc = copy.deepcopy(tiny)
    doc["offers"][0]["end_slot"] = 21
    doc["offers"][1]["start_slot"] = -1
    doc["bids"][0]["latest_end_slot"] = 99
    doc["bids"][1]["earliest_start_slot"] = 10
    doc["bids"][1]["latest_end_slot"] = 10
    found = bad(doc)
    assert any(p.startswith("offers[0].end_slot:") for p in found)
    assert any(p.startswith("offers[1].start_slot:") for p in found)
    assert any(p.startswith("bids[0].latest_end_slot:") for p in found)
    assert any(p.startswith("bids[1].latest_end_slot:") for p in found)


def test_a_duration_longer_than_its_window_is_reported(tiny):
    doc = copy.deepcopy(tiny)
    doc["bids"][0]["duration_slots"] = 11  # window [5, 15)
    assert any(p.startswith("bids[0].duration_slots:") for p in bad(doc))


def test_duplicate_ids_are_reported(tiny):
    doc = copy.deepcopy(tiny)
    doc["bids"][3]["id"] = doc["bids"][0]["id"]
    doc["offers"][2]["id"] = "oA"
    found = bad(doc)
    assert any(p.startswith("bids[3].id:") and "duplicate" in p for p in found)
    assert any(p.startswith("offers[2].id:") and "duplicate" in p for p in found)


def test_min_gpus_above_gpus_is_reported(tiny):
    doc = copy.deepcopy(tiny)
    doc["bids"][4]["min_gpus"] = 13
    assert bad(doc) == ["bids[4].min_gpus: must be at most gpus (12), got 13"]


def test_every_problem_is_listed_not_just_the_first(tiny):
    doc = copy.deepcopy(tiny)
    doc["bids"][0]["gpus"] = -1
    doc["bids"][1]["colocate"] = 1
    doc["offers"][2]["gpus"] = "16"
    assert len(bad(doc)) == 3


@pytest.mark.parametrize("doc", [None, [], "round", 3, {}, {"format": "gridx.round/v2"}])
def test_not_a_round_at_all_is_bad_input(doc):
    result = clear(doc)  # type: ignore[arg-type]
    assert result["status"] == "infeasible_input"
    assert result["message"]


def test_wrong_format_and_bad_start_are_reported(tiny):
    doc = copy.deepcopy(tiny)
    doc["format"] = "gridx.round/v0"
    doc["start"] = "yesterday"
    found = bad(doc)
    assert any(p.startswith("format:") for p in found)
    assert any(p.startswith("start:") for p in found)


def test_a_bid_for_a_model_nobody_offers_is_valid_and_loses(tiny):
    doc = copy.deepcopy(tiny)
    doc["bids"].append({**doc["bids"][1], "id": "bQ", "gpu_models": ["TPU-v9"]})
    result = clear(doc)
    assert result["status"] == "optimal"
    assert problems(doc, result) == []
    assert {lo["bid"]: lo["reason"] for lo in result["losers"]}["bQ"] == "no_offer"


def test_a_limit_below_every_reserve_gets_its_reason(tiny):
    doc = copy.deepcopy(tiny)
    doc["bids"].append({**doc["bids"][1], "id": "bCheap", "limit_cents_per_gpu_hour": 100})
    reasons = {lo["bid"]: lo["reason"] for lo in clear(doc)["losers"]}
    assert reasons["bCheap"] == "limit_below_reserve"


def test_a_losing_xor_sibling_names_the_winner(tiny):
    doc = copy.deepcopy(tiny)
    # make bZ1 servable by giving oB the first ten slots too; bZ2 or bZ1 wins, never both
    doc["offers"].append({**doc["offers"][1], "id": "oB2", "start_slot": 0, "end_slot": 10})
    result = clear(doc)
    assert problems(doc, result) == []
    losers = {lo["bid"]: lo for lo in result["losers"]}
    z_losers = [b for b in ("bZ1", "bZ2") if b in losers]
    assert len(z_losers) == 1
    assert losers[z_losers[0]]["reason"] == "xor_sibling_won"
    assert losers[z_losers[0]]["xor_winner"] in ("bZ1", "bZ2")


def test_extra_keys_are_ignored(tiny):
    doc = copy.deepcopy(tiny)
    doc["comment"] = "hello"
    doc["bids"][0]["note"] = {"x": 1}
    assert clear(doc)["welfare_cents"] == 8480


@pytest.mark.parametrize(
    ("where", "key", "value"),
    [
        (None, "slots", 100_001),
        (None, "slot_minutes", 1_441),
        ("offers", "gpus", 10**30),
        ("offers", "reserve_cents_per_gpu_hour", 2**63),
        ("bids", "gpus", 100_001),
        ("bids", "min_gpus", 10**30),
        ("bids", "limit_cents_per_gpu_hour", 4 * 10**18),
    ],
)
def test_numbers_beyond_the_engines_limits_are_reported(tiny, where, key, value):
    # before the limits a 4e18 limit overflowed int64 and the bid was reported below reserve, and
    # a 1e30 count ended in status "error" with no field named
    doc = copy.deepcopy(tiny)
    target = doc if where is None else doc[where][2]
    target[key] = value
    path = key if where is None else f"{where}[2].{key}"
    assert any(p.startswith(f"{path}: must be at most") for p in bad(doc))


def test_a_round_at_the_engines_limits_clears_exactly():
    # every number at its limit: the welfare, the payments and a loser's price needed are exact
    # (no int64 overflow), and the result passes the independent checker
    slots, top, most = 100_000, 10_000_000, 100_000
    # both bids want every GPU for the whole horizon
    whole = {
        "gpu_models": ["M"],
        "gpus": most,
        "min_gpus": most,
        "duration_slots": slots,
        "earliest_start_slot": 0,
        "latest_end_slot": slots,
    }
    doc = {
        "format": "gridx.round/v1",
        "round": "limits",
        "start": "2026-12-01T00:00:00Z",
        "slot_minutes": 1_440,
        "slots": slots,
        "currency": "usd",
        "offers": [
            {
                "id": "o1",
                "team": "s",
                "cluster": "c",
                "gpu_model": "M",
                "gpus": most,
                "start_slot": 0,
                "end_slot": slots,
                "reserve_cents_per_gpu_hour": 1,
            },
        ],
        "bids": [
            {**whole, "id": "b1", "team": "t", "colocate": True, "limit_cents_per_gpu_hour": top},
            {**whole, "id": "b2", "team": "u", "colocate": False, "limit_cents_per_gpu_hour": top - 1},
        ],
    }
    result = clear(doc, time_limit=60)
    assert result["status"] == "optimal"
    assert problems(doc, result) == []
    hours = slots * 1_440 // 60
    assert result["welfare_cents"] == (top - 1) * most * hours
    assert [a["bid"] for a in result["awards"]] == ["b1"]
    loser = result["losers"][0]
    assert loser["bid"] == "b2" and loser["reason"] == "outbid"
    assert loser["price_needed_cents_per_gpu_hour"] > top - 1


def test_gpu_hours_in_thirds_are_rounded_to_six_decimals(tiny):
    # 20-minute slots (the app allows any slot length that divides an hour) sell thirds of an hour
    doc = copy.deepcopy(tiny)
    doc["slot_minutes"] = 20
    result = clear(doc)
    assert result["status"] == "optimal"
    assert problems(doc, result) == []
    sold = [o["gpu_hours_sold"] for o in result["offers"]]
    assert any(isinstance(h, float) for h in sold)
    assert all(round(h, 6) == h for h in sold)
