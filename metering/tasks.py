"""Metering tasks; each calls one service and is safe to run twice (results are recomputed whole,
anomalies are raised once per key)."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(acks_late=True)
def deliveries_recompute_task() -> int:
    """Recompute recent leases' delivery (late reports arrive) and flag GPUs whose reports stopped."""
    return services.deliveries_recompute()


@shared_task(acks_late=True)
def delivery_compute_task(lease_id: int) -> int:
    """Recompute one lease's delivery; returns how many GPU results were written."""
    return len(services.delivery_compute(lease_id=lease_id))
