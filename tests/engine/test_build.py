"""The vectorised model builder gives exactly the arrays of the per-bid builder it replaced
(`reference_build.py`): same placements, sources, order, pruning, loser reasons and matrices, so
clearing results are unchanged byte for byte."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auctions.engine.components import components
from auctions.engine.formulation import Market, build_market, build_matrices
from auctions.engine.rounds import Round, parse_round
from auctions.engine.solve import natural_model, quiet_highs

from .conftest import load_round
from .generated import generated_round
from .reference_build import build_market_per_bid, build_matrices_coo, natural_model_coo

MODELS = ["A100", "H100", "H200"]  # H200: some bids ask for a model nobody offers
CLUSTERS = ["c1", "c2", "c3"]


def same_arrays(a: Any, b: Any, *names: str) -> bool:
    """Attributes equal as arrays: values, dtype and shape."""
    for name in names:
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
            return False
    return True


def differences(new: Market, old: Market) -> list[str]:
    """Fields whose value, dtype or shape differ, then the same for the matrices built from them
    (down to the sparse matrices' index arrays)."""
    out = []
    for f in dataclasses.fields(Market):
        a, b = getattr(new, f.name), getattr(old, f.name)
        if isinstance(b, np.ndarray):
            if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b):
                out.append(f.name)
        elif a != b:
            out.append(f.name)
    ma, mb = build_matrices(new), build_matrices_coo(old)
    for f in dataclasses.fields(ma):
        a, b = getattr(ma, f.name), getattr(mb, f.name)
        if sp.issparse(b):
            # the engine writes CSC (what cvxpy and HiGHS take), the old builder made CSR
            a, b = a.tocsc(), b.tocsc()
            if a.shape != b.shape or not same_arrays(a, b, "data", "indices", "indptr"):
                out.append(f"matrices.{f.name}")
        elif isinstance(b, np.ndarray):
            if not same_arrays(ma, mb, f.name):
                out.append(f"matrices.{f.name}")
        elif a != b:
            out.append(f"matrices.{f.name}")
    return out


def parsed(doc: dict[str, Any]) -> Round:
    rnd, problems = parse_round(doc)
    assert rnd is not None, problems
    return rnd


@st.composite
def rounds(draw: st.DrawFn) -> dict[str, Any]:
    slots = draw(st.integers(2, 12))
    offers = []
    for i in range(draw(st.integers(0, 8))):
        s = draw(st.integers(0, slots - 1))
        offers.append(
            {
                "id": f"o{i}",
                "team": "s",
                "cluster": draw(st.sampled_from(CLUSTERS)),
                "gpu_model": draw(st.sampled_from(MODELS[:2])),
                "gpus": draw(st.integers(1, 8)),
                "start_slot": s,
                "end_slot": draw(st.integers(s + 1, slots)),
                # few distinct reserves: ties are ordered by offer id
                "reserve_cents_per_gpu_hour": draw(st.sampled_from([0, 5, 5, 9])),
            }
        )
    bids = []
    for i in range(draw(st.integers(0, 20))):
        es = draw(st.integers(0, slots - 1))
        le = draw(st.integers(es + 1, slots))
        gpus = draw(st.integers(1, 10))
        bids.append(
            {
                "id": f"b{i:02d}",
                "team": "t",
                "gpu_models": draw(st.lists(st.sampled_from(MODELS), min_size=1, max_size=3, unique=True)),
                "gpus": gpus,
                "min_gpus": draw(st.integers(1, gpus)),
                "duration_slots": draw(st.integers(1, le - es)),
                "earliest_start_slot": es,
                "latest_end_slot": le,
                "colocate": draw(st.booleans()),
                "limit_cents_per_gpu_hour": draw(st.integers(0, 12)),
                "xor_group": draw(st.sampled_from([None, None, "g1", "g2"])),
            }
        )
    return {
        "format": "gridx.round/v1",
        "round": "prop",
        "start": "2026-12-01T00:00:00Z",
        "slot_minutes": draw(st.sampled_from([15, 60, 90])),
        "slots": slots,
        "currency": "usd",
        "offers": offers,
        "bids": bids,
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds())
def test_vectorised_builder_equals_the_per_bid_builder_on_random_rounds(doc):
    rnd = parsed(doc)
    for part in [rnd, *components(rnd)]:
        assert differences(build_market(part), build_market_per_bid(part)) == []


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_builder_equals_the_per_bid_builder_on_generated_rounds(seed):
    rnd = parsed(generated_round(seed, n_bids=60 + 20 * seed, n_offers=10 + 4 * seed))
    mk = build_market(rnd)
    assert mk.n_places > 0  # a round with something to compare
    assert differences(mk, build_market_per_bid(rnd)) == []


@pytest.mark.parametrize("name", ["tiny", "small-11", "small-12", "medium-21"])
def test_vectorised_builder_equals_the_per_bid_builder_on_sample_rounds(name):
    rnd = parsed(load_round(name))
    for part in [rnd, *components(rnd)]:
        assert differences(build_market(part), build_market_per_bid(part)) == []


def test_loser_reasons_of_the_builder_on_tiny():
    # bX: no offer covers 10 hours of its window; bZ1: no offer has 16 H100 at once
    mk = build_market(parsed(load_round("tiny")))
    reasons = {b.id: r for b, r in zip(mk.rnd.bids, mk.b_reason, strict=True)}
    assert reasons["bX"] == reasons["bZ1"] == "no_offer"
    assert reasons["bY"] is None
    assert mk.b_pstart[-1] == mk.n_places


def natural_differences(mk: Market, cap: Any = None) -> list[str]:
    """The natural model against the `HighsLp` the COO builder made: the arrays, then the model
    HiGHS holds after loading each (through `pass_to` and through `passModel(HighsLp)`)."""
    (new, nnz_new), (old, nnz_old) = natural_model(mk, cap), natural_model_coo(mk, cap)
    out = [] if nnz_new == nnz_old else ["nnz"]
    pairs = {
        "col_cost": "col_cost_",
        "col_lower": "col_lower_",
        "col_upper": "col_upper_",
        "row_lower": "row_lower_",
        "row_upper": "row_upper_",
    }
    for mine, theirs in pairs.items():
        if not np.array_equal(getattr(new, mine), np.asarray(getattr(old, theirs))):
            out.append(mine)
    for mine, theirs in (("a_start", "start_"), ("a_index", "index_"), ("a_value", "value_")):
        if not np.array_equal(getattr(new, mine), np.asarray(getattr(old.a_matrix_, theirs))):
            out.append(mine)
    h_new, h_old = quiet_highs(), quiet_highs()
    new.pass_to(h_new)
    h_old.passModel(old)
    lp_new, lp_old = h_new.getLp(), h_old.getLp()
    for name in (*pairs.values(), "num_col_", "num_row_", "sense_", "offset_"):
        if not np.array_equal(np.asarray(getattr(lp_new, name)), np.asarray(getattr(lp_old, name))):
            out.append(f"highs.{name}")
    if not same_arrays(lp_new.a_matrix_, lp_old.a_matrix_, "format_", "start_", "index_", "value_"):
        out.append("highs.a_matrix_")
    if list(lp_new.integrality_) != list(lp_old.integrality_):
        out.append("highs.integrality_")
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds())
def test_natural_model_equals_the_coo_built_one_on_random_rounds(doc):
    rnd = parsed(doc)
    for part in [rnd, *components(rnd)]:
        mk = build_market(part)
        assert natural_differences(mk) == []
        # the LNS passes the capacity left per offer and slot
        cap = np.arange(mk.o_gpus.size * part.slots, dtype=np.int64).reshape(mk.o_gpus.size, part.slots)
        assert natural_differences(mk, cap) == []


@pytest.mark.parametrize("seed", range(3))
def test_natural_model_equals_the_coo_built_one_on_generated_rounds(seed):
    mk = build_market(parsed(generated_round(seed, n_bids=80 + 40 * seed)))
    assert mk.n_sources > 0
    assert natural_differences(mk) == []
