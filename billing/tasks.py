"""Celery tasks of billing: each takes ids (or nothing), calls one service and is safe to run twice."""

from __future__ import annotations

from celery import shared_task

from . import services, statements
from .models import EventStatus, Invoice, InvoiceStatus, StripeEvent
from .stripe_gateway import GatewayError


@shared_task(acks_late=True)
def statements_build_task() -> int:
    """State every lease-day whose grace has passed, and any late evidence as adjustments."""
    return len(statements.statements_build_due())


@shared_task(acks_late=True)
def invoices_run_task() -> int:
    """Open due invoices and carry every unfinished one forward (each phase keyed, so repeatable)."""
    services.invoices_open_due()
    done = 0
    for invoice_id in Invoice.objects.filter(
        status__in=[
            InvoiceStatus.PENDING,
            InvoiceStatus.CREATED,
            InvoiceStatus.ITEMIZED,
            InvoiceStatus.FINALIZED,
        ]
    ).values_list("pk", flat=True):
        try:
            services.invoice_advance(invoice_id=invoice_id)
            done += 1
        except GatewayError as exc:
            if not exc.transient:
                raise
    return done


@shared_task(acks_late=True)
def payouts_run_task() -> int:
    """Send every pending seller payout."""
    return len(services.payouts_run())


@shared_task(acks_late=True, bind=True, max_retries=5)
def stripe_event_handle_task(self: object, event_id: int) -> str:
    """Apply one stored Stripe event; transient Stripe errors retry with backoff."""
    try:
        return services.event_handle(event_id=event_id)
    except GatewayError as exc:
        if exc.transient:
            raise self.retry(exc=exc, countdown=30) from exc  # type: ignore[attr-defined]
        raise


@shared_task(acks_late=True)
def events_sweep_task() -> int:
    """Handle events whose task was lost (a worker died between insert and handling)."""
    ids = list(StripeEvent.objects.filter(status=EventStatus.RECEIVED).values_list("pk", flat=True)[:500])
    for event_id in ids:
        services.event_handle(event_id=event_id)
    return len(ids)
