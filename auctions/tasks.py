"""Round lifecycle tasks; each calls one service and is safe to run twice."""

from __future__ import annotations

from typing import Any

from celery import chord, shared_task

from . import services
from .engine import clearing  # noqa: F401  # workers clear rounds: load the solver at start, not in a round's clock


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


@shared_task(acks_late=True)
def round_clear_part_task(round_id: int, attempt: int, index: int) -> dict[str, Any] | None:
    """Clear one independent sub-market of a round (a chord member)."""
    return services.round_part_clear(round_id=round_id, attempt=attempt, index=index)


@shared_task(acks_late=True)
def round_clear_merge_task(parts: list[dict[str, Any] | None], round_id: int, attempt: int) -> str:
    """Merge the sub-markets' results and write the round (the chord's body)."""
    return services.round_parts_merge(round_id=round_id, attempt=attempt, parts=parts)


def dispatch_parts(*, round_id: int, attempt: int, parts: int) -> None:
    """Queue one task per sub-market, with the merge as the chord's callback."""
    header = [round_clear_part_task.s(round_id, attempt, i) for i in range(parts)]
    chord(header)(round_clear_merge_task.s(round_id, attempt))


@shared_task(acks_late=True)
def lease_events_task() -> int:
    """Send lease.started / lease.ended notifications and webhooks (beat, every minute)."""
    return services.lease_events_emit()
