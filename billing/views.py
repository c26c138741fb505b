"""The Stripe webhook endpoint: verify, store once by event id, hand to a task."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import services, tasks
from .stripe_gateway import SignatureError, construct_event


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Answer 400 to anything unsigned, altered or stale; 200 once the event is stored."""
    try:
        event = construct_event(
            request.body,
            request.headers.get("Stripe-Signature", ""),
            secret=settings.STRIPE_WEBHOOK_SECRET,
            tolerance=settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS,
        )
    except SignatureError:
        return JsonResponse({"error": "invalid signature"}, status=400)
    with transaction.atomic():
        row, created = services.event_record(event=event)
        if created:
            transaction.on_commit(lambda: tasks.stripe_event_handle_task.delay(row.pk))
    return JsonResponse({"received": True, "duplicate": not created})
