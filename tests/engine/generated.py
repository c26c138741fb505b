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
