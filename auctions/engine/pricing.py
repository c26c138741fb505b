"""Prices and payments (rule "lp-dual-capped/v1"; the properties are argued in docs/engine.md).

Unit prices, integer cents per GPU-hour, per offer and slot: the offer's reserve plus the LP
relaxation's capacity dual at that slot (duals live at checkpoints, the slots where a lease from the
offer can start; elsewhere the price is the reserve). A source's charge is the sum of its unit prices
over its GPU-hours. Per award:

- the buyer pays its charge, capped at `limit x gpus x hours` (rounded down) and raised to the sum of
  its sources' reserve floors (each rounded up) when the charge falls below them;
- each source gets its reserve floor plus a share of the rest of the payment proportional to the
  dual part of its charge (largest remainder, ties by offer id);
so buyers pay exactly what sellers receive (no deficit, no surplus), every buyer pays at most its
limit and every seller gets at least its reserve. `uplift_cents` is what the caps took off the
charges: the make-whole cost of the clearing not being supported by linear prices.

Amounts are computed exactly as `rate x gpus x slots x slot_minutes` ("cent-minutes"), divided by 60
once with the rounding named above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .formulation import FloatArray, IntArray, Market

RULE = "lp-dual-capped/v1"


def unit_prices(mk: Market, duals: FloatArray) -> IntArray:
    """Integer cents per GPU-hour for every (offer, slot); `duals` (offers x slots) are capacity
    prices in cents per GPU per slot."""
    prices = np.repeat(mk.o_reserve[:, None], mk.rnd.slots, axis=1).astype(np.int64)
    if duals.size:
        per_hour = duals * 60.0 / mk.rnd.slot_minutes
        bump = np.floor(per_hour + 0.5 - 1e-6).astype(np.int64)  # half up, robust to float noise
        prices += np.maximum(bump, 0)
    return prices


def ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


@dataclass(frozen=True)
class AwardMoney:
    """Payment of one award and the receipt of each of its sources (cents)."""

    payment: int
    receipts: tuple[int, ...]
    uplift_cm: int  # cent-minutes taken off the price charge by the buyer's cap


def priceable(
    limit: int, gpus_by_source: list[int], reserves: list[int], dur: int, slot_minutes: int
) -> bool:
    """Can this award be paid in whole cents with IR on both sides? (fails only on rounding edges)."""
    total = sum(gpus_by_source)
    cap = (limit * total * dur * slot_minutes) // 60
    floor_sum = sum(
        ceil_div(r * g * dur * slot_minutes, 60) for r, g in zip(reserves, gpus_by_source, strict=True)
    )
    return cap >= floor_sum


def award_money(
    *,
    limit: int,
    dur: int,
    slot_minutes: int,
    gpus: list[int],
    reserves: list[int],
    charges_cm: list[int],
    offer_ids: list[str],
) -> AwardMoney:
    """Apply the rule above to one award. `charges_cm[i]` = sum of unit prices x gpus x slot_minutes."""
    total = sum(gpus)
    cap_cm = limit * total * dur * slot_minutes
    floors = [ceil_div(r * g * dur * slot_minutes, 60) for r, g in zip(reserves, gpus, strict=True)]
    charge_cm = sum(charges_cm)
    payment = max(min(cap_cm, charge_cm) // 60, sum(floors))
    surplus = payment - sum(floors)
    weights = [
        max(c - r * g * dur * slot_minutes, 0) for c, r, g in zip(charges_cm, reserves, gpus, strict=True)
    ]
    if sum(weights) == 0:
        weights = list(gpus)
    wsum = sum(weights)
    shares = [surplus * w // wsum for w in weights]
    left = surplus - sum(shares)
    # largest remainder first, ties by offer id
    order = sorted(range(len(weights)), key=lambda i: (-((surplus * weights[i]) % wsum), offer_ids[i]))
    for i in order[:left]:
        shares[i] += 1
    receipts = tuple(f + s for f, s in zip(floors, shares, strict=True))
    return AwardMoney(payment, receipts, max(charge_cm - cap_cm, 0))


def window_charges(prices: IntArray) -> IntArray:
    """Prefix sums of unit prices over slots, per offer: charge of [s, e) = P[o, e] - P[o, s]."""
    out = np.zeros((prices.shape[0], prices.shape[1] + 1), dtype=np.int64)
    np.cumsum(prices, axis=1, out=out[:, 1:])
    return out


def price_needed(mk: Market, b: int, cum: IntArray) -> int | None:
    """Lowest average unit price (cents per GPU-hour, rounded up) at which the bid's cheapest
    placement could buy `min_gpus` GPUs at the published prices, ignoring what others took.

    All placements at once: each placement's sources cheapest first (ties in source order), the
    GPUs each would add until `min_gpus`, and per placement the cost of those; exact integers.
    (A loop over placements, each selecting its sources by mask, was quadratic: 0.54 s for 95
    losers with ~170 start times each on a fuzzed round, more than the rest of its pricing.)"""
    p0, p1 = int(mk.b_pstart[b]), int(mk.b_pstart[b + 1])
    if p0 == p1:
        return None
    k0, k1 = int(mk.p_kstart[p0]), int(mk.p_kstart[p1])
    ks = np.arange(k0, k1)
    o = mk.k_offer[ks]
    pl = mk.k_place[ks]
    w = cum[o, mk.p_end[pl]] - cum[o, mk.p_start[pl]]  # price-slots per GPU
    # sources stay grouped by placement (they are stored so), cheapest first within each
    order = np.lexsort((w, pl))
    ub = mk.k_ub[ks[order]]
    ws = w[order]
    starts = mk.p_kstart[p0:p1] - k0
    counts = np.diff(mk.p_kstart[p0 : p1 + 1])
    before = np.cumsum(ub) - ub  # GPUs of the cheaper sources of the same placement
    before -= np.repeat(before[starts], counts)
    need = int(mk.b_min[b])
    take = np.clip(need - before, 0, ub)
    got = np.add.reduceat(take, starts)
    cost = np.add.reduceat(take * ws, starts)  # price-slots x gpus
    ok = got >= need
    if not ok.any():
        return None
    per = -((-cost[ok]) // (need * int(mk.b_dur[b])))  # rounded up
    return int(per.min())
