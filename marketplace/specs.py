"""Plain, frozen descriptions of orders as callers submit them, before they are stored."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class OfferSpec:
    """What a seller offers: `gpus` GPUs of `gpu_model` in a cluster, idle in `[start, end)`."""

    cluster_id: int
    gpu_model: str
    gpus: int
    start: dt.datetime
    end: dt.datetime
    reserve_cents_per_gpu_hour: int


@dataclass(frozen=True)
class BidSpec:
    """What a buyer asks for; maps one to one onto a gridx.round/v1 bid."""

    gpu_models: tuple[str, ...]
    gpus: int
    min_gpus: int
    duration_hours: int
    earliest_start: dt.datetime
    latest_end: dt.datetime
    colocate: bool
    limit_cents_per_gpu_hour: int
    xor_group: str = ""

    def canonical(self) -> BidSpec:
        """The same request with its model list in a fixed order, for comparing requests."""
        return BidSpec(
            gpu_models=tuple(sorted(self.gpu_models)),
            gpus=self.gpus,
            min_gpus=self.min_gpus,
            duration_hours=self.duration_hours,
            earliest_start=self.earliest_start,
            latest_end=self.latest_end,
            colocate=self.colocate,
            limit_cents_per_gpu_hour=self.limit_cents_per_gpu_hour,
            xor_group=self.xor_group,
        )
