"""The LP as the large-round search's guide (`auctions/engine/guide.py`): the placements it hands
the re-packs, the LP it solves (a valid bound), its process, and a clearing that uses it."""

from __future__ import annotations

import multiprocessing
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import auctions.engine.clearing as clearing
from auctions.engine import clear, guide
from auctions.engine.formulation import build_market
from auctions.engine.rounds import parse_round

from .checker import exact_welfare, problems
from .generated import generated_round
from .lp_bound import lp_bound
from .test_property import rounds


def market(doc):
    rnd, errs = parse_round(doc)
    assert rnd is not None, errs
    return build_market(rnd)


def random_z(mk, seed):
    """A fractional `z` as an LP might give: per bid, nothing, one placement, or a split."""
    rng = np.random.default_rng(seed)
    z = np.zeros(mk.n_places)
    for b in range(mk.b_gpus.size):
        a0, a1 = int(mk.b_pstart[b]), int(mk.b_pstart[b + 1])
        if a1 == a0:
            continue
        kind = rng.integers(3)
        if kind == 1:
            z[a0 + rng.integers(a1 - a0)] = 1.0
        elif kind == 2:
            w = rng.random(a1 - a0) * (rng.random(a1 - a0) < 0.6)
            z[a0:a1] = w / max(w.sum(), 1e-9) * rng.uniform(0.0, 1.0)
    return z


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds(), st.integers(0, 10_000), st.integers(1, 50))
def test_guided_placements_are_the_lps(doc, seed, i):
    mk = market(doc)
    z = random_z(mk, seed)
    fallback = np.arange(mk.b_gpus.size) * 7 % 5 - 1  # any marker values
    first = guide.guided_tops(mk, z, 0, fallback)
    later = guide.guided_tops(mk, z, i, fallback)
    assert np.array_equal(later, guide.guided_tops(mk, z, i, fallback))  # seeded
    for b in range(mk.b_gpus.size):
        a0, a1 = int(mk.b_pstart[b]), int(mk.b_pstart[b + 1])
        if a1 == a0 or z[a0:a1].sum() <= guide.PLACED_Z:
            assert first[b] == later[b] == fallback[b]  # the LP does not place it
            continue
        # the first pass: the bid's placement of largest z (the first on ties)
        assert first[b] == a0 + int(np.argmax(z[a0:a1]))
        # later ones: a placement of the bid that the LP uses
        assert a0 <= later[b] < a1 and z[later[b]] > 0


def test_later_passes_draw_each_placement_about_as_often_as_its_z():
    doc = generated_round(3, n_bids=40, n_offers=8, slots=24)
    mk = market(doc)
    b = int(np.flatnonzero(np.diff(mk.b_pstart) >= 3)[0])
    a0 = int(mk.b_pstart[b])
    z = np.zeros(mk.n_places)
    z[a0], z[a0 + 2] = 0.2, 0.6
    fallback = np.full(mk.b_gpus.size, -1)
    picks = [int(guide.guided_tops(mk, z, i, fallback)[b]) - a0 for i in range(1, 801)]
    assert set(picks) == {0, 2}
    share = picks.count(2) / len(picks)
    assert 0.68 < share < 0.82  # 0.75 expected; 800 seeded draws


def test_the_guide_lp_is_the_convex_hull_relaxation_and_bounds_the_optimum():
    doc = generated_round(2)  # the full MIP proves its optimum in ~1 s
    mk = market(doc)
    sol = guide.solve_guide_lp(mk, 60.0)
    assert sol is not None
    rnd, _ = parse_round(doc)
    assert abs(sol.objective - lp_bound(rnd, strong=True)) <= 1e-6 * sol.objective
    exact = clear(doc, time_limit=30.0)
    assert exact["status"] == "optimal"
    assert sol.objective >= exact["welfare_cents"] - 1e-6
    assert np.all((sol.z >= 0) & (sol.z <= 1))
    per_group = np.bincount(mk.b_group[mk.p_bid], weights=sol.z, minlength=mk.n_groups)
    assert np.all(per_group <= 1 + 1e-6)  # an XOR group's bids take at most one placement in all


def test_the_guide_process_answers_and_is_gone_after():
    doc = generated_round(2)
    mk = market(doc)
    g = guide.LPGuide(mk, 60.0)
    t_end = time.monotonic() + 60
    sol = g.poll()
    while sol is None and time.monotonic() < t_end:
        time.sleep(0.05)
        sol = g.poll()
    assert sol is not None
    here = guide.solve_guide_lp(mk, 60.0)
    assert here is not None and abs(sol.objective - here.objective) <= 1e-6 * here.objective
    assert multiprocessing.active_children() == []
    # a guide closed before it answers takes its process with it
    g2 = guide.LPGuide(market(generated_round(9, n_bids=400, n_offers=60, slots=96)), 60.0)
    g2.close()
    assert g2.poll() is None
    assert multiprocessing.active_children() == []


def test_a_clearing_guided_by_the_lp_is_valid_and_reports_the_lp_bound(monkeypatch):
    # a 400-bid generated round, forced onto the large-round path with the guide
    doc = generated_round(9, n_bids=400, n_offers=60, slots=96)
    monkeypatch.setattr(clearing, "FULL_MIP_COLUMNS", 0)
    monkeypatch.setattr(clearing, "GUIDE_NNZ_PER_SECOND", 10**9)
    res = clear(doc, time_limit=20.0)
    assert problems(doc, res) == []
    assert multiprocessing.active_children() == []
    rnd, _ = parse_round(doc)
    strong = lp_bound(rnd, strong=True)
    # the LP arrived within the time (~1-2 s here) and its optimum is the tighter bound
    assert res["bound_cents"] <= strong + 1
    assert exact_welfare(doc, res) <= res["bound_cents"]


def test_while_the_lp_is_being_solved_at_most_one_move_is_out(monkeypatch):
    # the LP shares the machine with the search's helpers: until it arrives, one move at a time
    # (GUIDE_PENDING_HELPERS); once it has, as many as there are helpers
    from auctions.engine import lns
    from auctions.engine.lagrange import lagrangian_bound

    from .test_lns import _improve, _market

    class Pending:
        """A guide whose LP arrives `after` seconds from now (and brings no placements)."""

        def __init__(self, after):
            self.at = time.perf_counter() + after

        def pending(self):
            return time.perf_counter() < self.at

        def z(self):
            return None

    seen = []

    class Spy(lns.Moves):
        def solve(self, best, *a, **k):
            out = super().solve(best, *a, **k)
            seen.append((self.pending is not None and self.pending(), len(self.jobs)))
            return out

    monkeypatch.setattr(lns, "Moves", Spy)
    monkeypatch.setattr(clearing, "FULL_MIP_COLUMNS", 0)
    mk, start = _market(generated_round(9, n_bids=400, n_offers=60, slots=96))
    lag = lagrangian_bound(mk, target=start.welfare(mk), seconds=5.0)
    best = _improve(mk, start, 12.0, helpers=2, lam=lag.lam, guide=Pending(5.0))
    assert best.welfare(mk) >= start.welfare(mk)
    before = [n for p, n in seen if p]
    after = [n for p, n in seen if not p]
    assert before and max(before) <= lns.GUIDE_PENDING_HELPERS
    assert after and max(after) == 2
