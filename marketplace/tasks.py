"""Periodic market upkeep; each task calls one service and is safe to run twice."""

from __future__ import annotations

from celery import shared_task

from .services import orders_expire


@shared_task(acks_late=True)
def orders_expire_task() -> dict[str, int]:
    """Retire orders whose window can no longer be met."""
    return orders_expire()
