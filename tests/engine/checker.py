"""An independent validity checker for gridx.result/v1, written from round-format.md alone.

It shares no code with the engine on purpose: `problems(round_doc, result)` returns every rule of
a valid clearing that the result breaks (an empty list means valid).
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from typing import Any


def exact_welfare(round_doc: dict[str, Any], result: dict[str, Any]) -> Fraction:
    """Sum over awards and sources of (limit - reserve) x source gpus x hours, exactly."""
    bids = {b["id"]: b for b in round_doc["bids"]}
    offers = {o["id"]: o for o in round_doc["offers"]}
    total = Fraction(0)
    for a in result["awards"]:
        hours = Fraction((a["end_slot"] - a["start_slot"]) * round_doc["slot_minutes"], 60)
        for s in a["sources"]:
            margin = (
                bids[a["bid"]]["limit_cents_per_gpu_hour"] - offers[s["offer"]]["reserve_cents_per_gpu_hour"]
            )
            total += margin * s["gpus"] * hours
    return total


def problems(round_doc: dict[str, Any], result: dict[str, Any]) -> list[str]:  # noqa: C901 - one rule per block
    out: list[str] = []
    if result.get("format") != "gridx.result/v1":
        out.append("format is not gridx.result/v1")
    if result.get("round") != round_doc.get("round"):
        out.append("round id differs from the round file")
    if result.get("status") not in ("optimal", "time_limit"):
        out.append(f"status {result.get('status')!r} is not a clearing")
        return out
    bids = {b["id"]: b for b in round_doc["bids"]}
    offers = {o["id"]: o for o in round_doc["offers"]}
    slot_minutes = round_doc["slot_minutes"]
    won: set[str] = set()
    xor_won: dict[str, str] = {}
    used: dict[tuple[str, int], int] = defaultdict(int)
    paid_by_offer: dict[str, Fraction] = defaultdict(Fraction)
    hours_by_offer: dict[str, Fraction] = defaultdict(Fraction)
    total_paid = 0
    for a in result["awards"]:
        bid = bids.get(a["bid"])
        if bid is None:
            out.append(f"award for unknown bid {a['bid']}")
            continue
        # rule 1
        if a["bid"] in won:
            out.append(f"{a['bid']} wins twice")
        won.add(a["bid"])
        group = bid.get("xor_group")
        if group is not None:
            if group in xor_won:
                out.append(f"xor group {group} has two winners: {xor_won[group]}, {a['bid']}")
            xor_won[group] = a["bid"]
        # rule 2
        if a["gpu_model"] not in bid["gpu_models"]:
            out.append(f"{a['bid']}: model {a['gpu_model']} not asked for")
        s, e = a["start_slot"], a["end_slot"]
        if e - s != bid["duration_slots"]:
            out.append(f"{a['bid']}: lasts {e - s} slots, asked {bid['duration_slots']}")
        if s < bid["earliest_start_slot"] or e > bid["latest_end_slot"]:
            out.append(f"{a['bid']}: [{s},{e}) outside its window")
        if not bid["min_gpus"] <= a["gpus"] <= bid["gpus"]:
            out.append(f"{a['bid']}: {a['gpus']} GPUs outside [{bid['min_gpus']}, {bid['gpus']}]")
        # rule 3
        if sum(src["gpus"] for src in a["sources"]) != a["gpus"]:
            out.append(f"{a['bid']}: sources do not add up to the award")
        clusters = set()
        hours = Fraction((e - s) * slot_minutes, 60)
        for src in a["sources"]:
            o = offers.get(src["offer"])
            if o is None:
                out.append(f"{a['bid']}: unknown offer {src['offer']}")
                continue
            if src["gpus"] <= 0:
                out.append(f"{a['bid']}: source {src['offer']} has {src['gpus']} GPUs")
            if o["gpu_model"] != a["gpu_model"]:
                out.append(f"{a['bid']}: source {o['id']} is another model")
            if o["start_slot"] > s or o["end_slot"] < e:
                out.append(f"{a['bid']}: source {o['id']} does not cover [{s},{e})")
            clusters.add(o["cluster"])
            for t in range(s, e):
                used[(o["id"], t)] += src["gpus"]
            hours_by_offer[o["id"]] += src["gpus"] * hours
        # rule 4
        if bid["colocate"]:
            if len(clusters) > 1:
                out.append(f"{a['bid']}: colocated across clusters {sorted(clusters)}")
            if a.get("cluster") not in clusters and clusters:
                out.append(f"{a['bid']}: cluster {a.get('cluster')} is not its sources' cluster")
        elif a.get("cluster") is not None:
            out.append(f"{a['bid']}: cluster must be null when not colocated")
        # rule 6, buyer side
        pay = a["payment_cents"]
        if not isinstance(pay, int) or pay < 0:
            out.append(f"{a['bid']}: payment {pay!r} is not whole non-negative cents")
        elif pay > bid["limit_cents_per_gpu_hour"] * a["gpus"] * hours:
            out.append(f"{a['bid']}: pays {pay} above its limit")
        total_paid += pay if isinstance(pay, int) else 0
    # rule 5
    for (oid, t), g in used.items():
        if g > offers[oid]["gpus"]:
            out.append(f"offer {oid} slot {t}: {g} GPUs taken of {offers[oid]['gpus']}")
    # rule 6, seller side; rule 7
    total_received = 0
    listed = set()
    for row in result["offers"]:
        oid = row["offer"]
        listed.add(oid)
        if oid not in offers:
            out.append(f"revenue for unknown offer {oid}")
            continue
        rev = row["revenue_cents"]
        if not isinstance(rev, int):
            out.append(f"offer {oid}: revenue {rev!r} is not whole cents")
            continue
        total_received += rev
        paid_by_offer[oid] += rev
        if rev < offers[oid]["reserve_cents_per_gpu_hour"] * hours_by_offer[oid]:
            out.append(f"offer {oid}: receives {rev} below its reserve")
        # exact when whole; otherwise rounded to 6 decimals, as docs/engine.md says (20-minute slots
        # sell thirds of an hour, which no decimal writes exactly)
        sold, exact = Fraction(row["gpu_hours_sold"]), hours_by_offer[oid]
        if sold != exact and (exact.denominator == 1 or abs(sold - exact) > Fraction(1, 2 * 10**6)):
            out.append(f"offer {oid}: gpu_hours_sold {row['gpu_hours_sold']} != {exact}")
    for oid in hours_by_offer:
        if oid not in listed:
            out.append(f"offer {oid} sold but is not listed in offers")
    if total_paid < total_received:
        out.append(f"deficit: buyers pay {total_paid}, sellers receive {total_received}")
    # welfare and bound
    w = exact_welfare(round_doc, result)
    if abs(result["welfare_cents"] - w) >= 1:
        out.append(f"welfare_cents {result['welfare_cents']} is not the awards' welfare {w}")
    if result["bound_cents"] < result["welfare_cents"]:
        out.append("bound below welfare")
    # every losing bid has a reason, every bid is a winner or a loser
    losers = {lo["bid"]: lo for lo in result["losers"]}
    for bid_id in bids:
        if (bid_id in won) == (bid_id in losers):
            out.append(f"{bid_id}: must be exactly one of winner / loser")
    for lo in result["losers"]:
        if not lo.get("reason"):
            out.append(f"{lo['bid']}: loser without a reason")
    # price index: one row per (cluster, model, slot) that traded
    traded = {
        (offers[s["offer"]]["cluster"], a["gpu_model"], t)
        for a in result["awards"]
        for s in a["sources"]
        for t in range(a["start_slot"], a["end_slot"])
    }
    published = {(p["cluster"], p["gpu_model"], p["slot"]) for p in result["prices"]}
    if traded != published:
        out.append("price index rows differ from the (cluster, model, slot) that traded")
    return out
