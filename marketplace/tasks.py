"""Periodic market upkeep and webhook delivery; each task calls one service and is safe to run twice."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.utils import timezone

from .models import DeliveryStatus
from .services import idempotency_prune, orders_expire, webhook_attempt, webhook_deliveries_due


@shared_task(acks_late=True)
def orders_expire_task() -> dict[str, int]:
    """Retire orders whose window can no longer be met."""
    return orders_expire()


@shared_task(bind=True, acks_late=True, max_retries=None)
def webhook_deliver_task(self: Any, delivery_id: int) -> str:
    """Attempt a delivery; while it stays pending, come back when its backoff says.

    The attempt claims the delivery first, so a duplicate of this task sends nothing.
    """
    delivery = webhook_attempt(delivery_id=delivery_id)
    if delivery is None:
        return "not due"
    if delivery.status == DeliveryStatus.PENDING and delivery.next_attempt_at is not None:
        countdown = max((delivery.next_attempt_at - timezone.now()).total_seconds(), 0.0)
        raise self.retry(countdown=countdown)
    return str(delivery.status)


@shared_task(acks_late=True)
def webhook_sweep_task() -> int:
    """Re-queue due deliveries whose retry message was lost (a worker died holding it)."""
    due = webhook_deliveries_due()
    for delivery_id in due:
        webhook_deliver_task.delay(delivery_id)
    return len(due)


@shared_task(acks_late=True)
def idempotency_prune_task() -> int:
    return idempotency_prune()
