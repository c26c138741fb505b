"""Round lifecycle tasks; each calls one service and is safe to run twice."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(acks_late=True)
def round_close_due_task() -> dict[str, int | None]:
    """Close the open round when its cutoff passed (beat, every minute)."""
    return services.round_close_due()


@shared_task(acks_late=True)  # routed to the solver queue by CELERY_TASK_ROUTES
def round_clear_task(round_id: int) -> str:
    """Clear one closed round; a duplicate delivery finds the claim taken and does nothing."""
    return services.round_clear(round_id=round_id)


@shared_task(acks_late=True)
def round_clear_sweep_task() -> list[int]:
    """Re-run clearings whose worker died or whose task was lost."""
    return services.round_clear_sweep()
