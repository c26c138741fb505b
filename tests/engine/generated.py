"""Seeded random rounds shaped like the sample rounds (several models and clusters, all-or-nothing
and partial bids, XOR groups across models), big enough that greedy is not optimal.

    python -m tests.engine.generated SEED [BIDS OFFERS SLOTS] > ROUND.json   # default 80 14 48

writes one as a round file (docs/engine.md measures the engine on such rounds of other sizes)."""

from __future__ import annotations

import json
import random
import sys
from typing import Any

MODELS = ["A100", "H100", "H200"]
CLUSTERS = ["c0", "c1", "c2", "c3"]


def generated_round(seed: int, n_bids: int = 80, n_offers: int = 14, slots: int = 48) -> dict[str, Any]:
    rnd = random.Random(seed)
    offers = []
    for i in range(n_offers):
        s = rnd.randrange(0, slots // 2)
        offers.append(
            {
                "id": f"o{i:03d}",
                "team": f"s{i % 5}",
                "cluster": rnd.choice(CLUSTERS),
                "gpu_model": MODELS[i % len(MODELS)],
                "gpus": rnd.choice([8, 16, 32, 64]),
                "start_slot": s,
                "end_slot": rnd.randrange(s + slots // 4, slots + 1),
                "reserve_cents_per_gpu_hour": rnd.randrange(80, 200),
            }
        )
    bids = []
    groups = 0
    i = 0
    while i < n_bids:
        # a third of the bids come as XOR pairs asking for two different models
        alternatives = 2 if rnd.random() < 0.3 and i + 1 < n_bids else 1
        group = f"g{groups}" if alternatives > 1 else None
        groups += alternatives > 1
        dur = rnd.choice([2, 4, 6, 8, 12])
        es = rnd.randrange(0, slots - dur)
        le = min(slots, es + dur + rnd.choice([0, 2, 6, 12]))
        gpus = rnd.choice([2, 4, 8, 16, 24, 32])
        for model in rnd.sample(MODELS, alternatives):
            bids.append(
                {
                    "id": f"b{i:03d}",
                    "team": f"t{i % 7}",
                    "gpu_models": [model],
                    "gpus": gpus,
                    "min_gpus": gpus if rnd.random() < 0.8 else max(1, gpus // 2),
                    "duration_slots": dur,
                    "earliest_start_slot": es,
                    "latest_end_slot": le,
                    "colocate": rnd.random() < 0.6,
                    "limit_cents_per_gpu_hour": rnd.randrange(120, 320),
                    "xor_group": group,
                }
            )
            i += 1
    return {
        "format": "gridx.round/v1",
        "round": f"gen-{seed}",
        "start": "2026-12-01T00:00:00Z",
        "slot_minutes": 60,
        "slots": slots,
        "currency": "usd",
        "offers": offers,
        "bids": bids,
    }


def wide_round(seed: int, n_bids: int = 26, n_offers: int = 12, slots: int = 336) -> dict[str, Any]:
    """Bids whose windows are much wider than their durations (a week of 30-minute slots, jobs
    of 1-200 slots with up to 400 slots of slack): hundreds of placements per bid, the shape on
    which HiGHS's full presolve of the natural form took 2-25 s (docs/engine.md, *Solving*)."""
    rnd = random.Random(seed)
    offers = []
    for i in range(n_offers):
        s, e = (0, slots) if rnd.random() < 0.4 else sorted(rnd.sample(range(slots + 1), 2))
        offers.append(
            {
                "id": f"o{i:03d}",
                "team": f"s{i % 4}",
                "cluster": rnd.choice(CLUSTERS[:3]),
                "gpu_model": rnd.choice(MODELS),
                "gpus": rnd.choice([4, 8, 16, 32]),
                "start_slot": s,
                "end_slot": e,
                "reserve_cents_per_gpu_hour": rnd.randrange(50, 250),
            }
        )
    bids = []
    for i in range(n_bids):
        dur = min(rnd.choice([1, 4, 8, 16, 48, 96, 200]), slots)
        win = min(slots, dur + rnd.choice([0, 4, 32, 96, 400]))
        es = rnd.randrange(0, slots - win + 1)
        gpus = rnd.choice([1, 2, 4, 8, 16])
        bids.append(
            {
                "id": f"w{i:03d}",
                "team": f"t{i % 6}",
                "gpu_models": [rnd.choice(MODELS)],
                "gpus": gpus,
                "min_gpus": gpus if rnd.random() < 0.7 else rnd.randint(1, gpus),
                "duration_slots": dur,
                "earliest_start_slot": es,
                "latest_end_slot": es + win,
                "colocate": rnd.random() < 0.5,
                "limit_cents_per_gpu_hour": rnd.randrange(80, 400),
                "xor_group": f"g{i // 2}" if i % 2 and rnd.random() < 0.5 else None,
            }
        )
    return {
        "format": "gridx.round/v1",
        "round": f"wide-{seed}",
        "start": "2026-12-01T00:00:00Z",
        "slot_minutes": 30,
        "slots": slots,
        "currency": "usd",
        "offers": offers,
        "bids": bids,
    }


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 4 or not all(a.isdigit() for a in argv):
        sys.stderr.write("usage: python -m tests.engine.generated SEED [BIDS OFFERS SLOTS]\n")
        return 2
    seed, *size = (int(a) for a in argv)
    kw = dict(zip(("n_bids", "n_offers", "slots"), size, strict=False))
    sys.stdout.write(json.dumps(generated_round(seed, **kw), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


FUZZ_MODELS = ["A100", "H100", "H200", "B200", "L40S", "MI300X", "V100", "T4", "A10G", "GH200"]


def fuzz_round(seed: int) -> dict[str, Any]:
    """Rounds of the shapes the samples and the two generators above lack, for fuzz campaigns
    (docs/engine.md, *Wide windows*, third fuzz wave): 5-400 bids, 1-60 offers, 4-672 slots of
    15-90 minutes, 1-8 models, 1-6 clusters, 1-3 independent sub-markets built in, windows from
    the duration to the whole horizon, durations 1-200 slots, XOR groups of 2-6, partial bids,
    bids naming several models or none that is offered, tied or zero limits and reserves.
    Session 13 chose `clearing.WIDE_PLACEMENTS_PER_BID` on the sub-markets of seeds 214-334."""
    r = random.Random(seed)
    n_bids = r.randint(5, 400)
    n_offers = r.randint(1, 60)
    slots = r.choice([4, 6, 8, 12, 24, 48, 96, 168, 200, 336, 500, 672])
    n_models = r.randint(1, 8)
    n_clusters = r.randint(1, 6)
    n_sub = 1 if r.random() < 0.6 else r.randint(2, 3)
    wide_frac = r.random()
    sm = r.choice([15, 20, 30, 60, 90])
    tie_prices = r.random() < 0.4
    zero_res = r.random() < 0.3
    limit_vals = [r.randrange(50, 500) for _ in range(3)]
    res_vals = [0 if zero_res and r.random() < 0.5 else r.randrange(0, 300) for _ in range(3)]
    xor_p = r.random() * 0.5
    partial_p = r.random()
    coloc_p = r.random()
    unserv_p = r.choice([0, 0, 0.05, 0.2])
    multi_model_p = r.random() * 0.4
    subs = []
    for s in range(n_sub):
        models = [f"{FUZZ_MODELS[i % len(FUZZ_MODELS)]}-s{s}" for i in range(r.randint(1, n_models))]
        clusters = [f"c{s}-{j}" for j in range(r.randint(1, n_clusters))]
        subs.append((models, clusters))

    def limit() -> int:
        return r.choice(limit_vals) if tie_prices else r.randrange(0, 600)

    def reserve() -> int:
        if zero_res and r.random() < 0.5:
            return 0
        return r.choice(res_vals) if tie_prices else r.randrange(0, 400)

    offers = []
    for i in range(n_offers):
        models, clusters = subs[i % n_sub]
        start, end = (0, slots) if r.random() < 0.4 else sorted(r.sample(range(slots + 1), 2))
        offers.append(
            {
                "id": f"o{i:04d}",
                "team": f"s{r.randrange(6)}",
                "cluster": r.choice(clusters),
                "gpu_model": r.choice(models),
                "gpus": r.choice([1, 2, 4, 8, 16, 32, 64, 128]),
                "start_slot": start,
                "end_slot": end,
                "reserve_cents_per_gpu_hour": reserve(),
            }
        )
    bids: list[dict[str, Any]] = []
    groups = 0
    while len(bids) < n_bids:
        models, clusters = subs[r.randrange(n_sub)]
        k = min(r.randint(2, 6) if r.random() < xor_p else 1, n_bids - len(bids))
        group = f"x{groups:04d}" if k > 1 else None
        groups += k > 1
        for _ in range(k):
            dur = min(slots, r.choice([1, 1, 2, 3, 4, 8, 12, 24, 48, 96, 150, 200, r.randint(1, 200)]))
            if r.random() < wide_frac:
                win = r.randint(min(slots, dur * 4 + 1), slots) if dur * 4 + 1 <= slots else slots
            else:
                win = min(slots, dur + r.choice([0, 0, 1, 2, 4, dur]))
            es = r.randrange(0, slots - win + 1)
            gpus = r.choice([1, 2, 3, 4, 8, 12, 16, 24, 32, 64, 100])
            min_gpus = gpus if r.random() > partial_p else r.randint(1, gpus)
            if r.random() < unserv_p:
                wanted = [r.choice(["NOPE", "Z9000"])]
            elif r.random() < multi_model_p:
                wanted = r.sample(models, r.randint(1, len(models)))
            else:
                wanted = [r.choice(models)]
            bids.append(
                {
                    "id": f"b{len(bids):04d}",
                    "team": f"t{r.randrange(9)}",
                    "gpu_models": wanted,
                    "gpus": gpus,
                    "min_gpus": min_gpus,
                    "duration_slots": dur,
                    "earliest_start_slot": es,
                    "latest_end_slot": es + win,
                    "colocate": r.random() < coloc_p,
                    "limit_cents_per_gpu_hour": limit(),
                    "xor_group": group,
                }
            )
    return {
        "format": "gridx.round/v1",
        "round": f"fz-{seed}",
        "start": "2026-12-01T00:00:00Z",
        "slot_minutes": sm,
        "slots": slots,
        "currency": "usd",
        "offers": offers,
        "bids": bids,
    }
