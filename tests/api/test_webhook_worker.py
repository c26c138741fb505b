"""Webhook retries under a real Celery worker: a failing endpoint is retried with backoff until it
answers, and a dead one is given up after the last attempt."""

from __future__ import annotations

import pytest
from django.db import transaction

from marketplace import services as market
from marketplace.models import DeliveryStatus, WebhookDelivery
from tests.processes import flush_broker, process_env, running, start_worker, wait_for

from .test_webhooks import Receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_real_worker_retries_until_the_endpoint_recovers_or_gives_up(acme, tmp_path, settings):
    settings.WEBHOOKS_ALLOW_HTTP = True
    flush_broker()
    flaky, dead = Receiver(status=500), Receiver(status=503)
    try:
        ok_endpoint, _ = market.webhook_endpoint_create(
            team=acme.team, actor=acme.owner, url=flaky.url, events=["bid.won"]
        )
        market.webhook_endpoint_create(team=acme.team, actor=acme.owner, url=dead.url, events=["bid.won"])
        env = process_env(WEBHOOK_RETRY_BASE_SECONDS="1", WEBHOOK_MAX_ATTEMPTS="3", WEBHOOKS_ALLOW_HTTP="1")
        worker = start_worker(env, tmp_path / "worker.log", name="hooks", queues="default")
        with running(worker):
            with transaction.atomic():
                market.webhook_event_emit(team=acme.team, event="bid.won", event_id="round:1:bid:1", data={})

            def settled() -> bool:
                if len(flaky.requests) >= 2:
                    flaky.status = 200  # the endpoint recovers after two failures
                states = set(WebhookDelivery.objects.values_list("status", flat=True))
                return DeliveryStatus.PENDING not in states

            wait_for(settled, timeout=60, what="both deliveries to settle")
        good = WebhookDelivery.objects.get(endpoint=ok_endpoint)
        bad = WebhookDelivery.objects.exclude(endpoint=ok_endpoint).get()
        assert good.status == DeliveryStatus.DELIVERED and good.attempts == 3
        assert [a.status_code for a in good.attempt_log.all()] == [500, 500, 200]
        assert bad.status == DeliveryStatus.FAILED and bad.attempts == 3 and len(dead.requests) == 3
        gaps = [
            (b.at - a.at).total_seconds()
            for a, b in zip(bad.attempt_log.all(), list(bad.attempt_log.all())[1:], strict=False)
        ]
        assert gaps[0] >= 1 and gaps[1] >= 2  # backoff doubles
    finally:
        flaky.close()
        dead.close()
