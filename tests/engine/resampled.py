"""A sample round resampled: the same bids and offers (sizes, models, XOR groups), with each bid's
limit and each offer's reserve jittered by up to 10%, each bid's window moved by up to 12 slots
(its width kept, inside the horizon) and each offer's cluster redrawn among the round's clusters.
For checking an engine change on rounds shaped like the samples but never tuned on: session 23's
change that looked best on large-31 and xlarge-41 lost 85k cents on seed 2 of large-31's
(docs/engine-experiments.md, *Session 23*).

    python -m tests.engine.resampled ROUND.json SEED > RESAMPLED.json
"""

from __future__ import annotations

import copy
import json
import random
import sys
from typing import Any


def resampled(doc: dict[str, Any], seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    out = copy.deepcopy(doc)
    slots = int(out["slots"])
    clusters = sorted({o["cluster"] for o in out["offers"]})
    for b in out["bids"]:
        b["limit_cents_per_gpu_hour"] = max(1, round(b["limit_cents_per_gpu_hour"] * rng.uniform(0.9, 1.1)))
        width = b["latest_end_slot"] - b["earliest_start_slot"]
        start = min(max(0, b["earliest_start_slot"] + rng.randint(-12, 12)), slots - width)
        b["earliest_start_slot"], b["latest_end_slot"] = start, start + width
    for o in out["offers"]:
        o["reserve_cents_per_gpu_hour"] = max(
            0, round(o["reserve_cents_per_gpu_hour"] * rng.uniform(0.9, 1.1))
        )
        o["cluster"] = rng.choice(clusters)
    out["round"] = f"{doc['round']}-resampled-{seed}"
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write(str(__doc__))
        return 2
    with open(argv[0]) as f:
        doc = json.load(f)
    json.dump(resampled(doc, int(argv[1])), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
