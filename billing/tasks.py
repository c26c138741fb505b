"""Celery tasks of billing: each takes ids (or nothing), calls one service and is safe to run twice."""

from __future__ import annotations

from celery import shared_task

from . import statements


@shared_task(acks_late=True)
def statements_build_task() -> int:
    """State every lease-day whose grace has passed, and any late evidence as adjustments."""
    return len(statements.statements_build_due())
