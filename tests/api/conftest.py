"""A two-team market reachable through the API: Acme owns every object the tests aim at."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pytest
import time_machine
from django.core.cache import cache
from rest_framework.test import APIClient

from auctions import services as rounds
from auctions.models import Lease, Round
from marketplace import services as market
from marketplace.models import ApiKey, Bid, Offer, Scope, User, WebhookDelivery, WebhookEndpoint
from marketplace.specs import BidSpec, OfferSpec
from tests.factories import UserFactory

T0 = dt.datetime(2026, 12, 1, 9, 20, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
ALL_SCOPES = list(Scope.values)


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def bid_body(start: dt.datetime, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "gpu_models": ["H100-SXM-80GB"],
        "gpus": 4,
        "min_gpus": 4,
        "duration_hours": 2,
        "earliest_start": iso(start),
        "latest_end": iso(start + 6 * H),
        "colocate": True,
        "limit_cents_per_gpu_hour": 300,
    }
    body.update(changes)
    return body


@dataclass
class World:
    acme: Any
    beta: Any
    round: Round
    start: dt.datetime
    open_bid: Bid
    won_bid: Bid
    offer: Offer
    lease: Lease
    endpoint: WebhookEndpoint
    delivery: WebhookDelivery
    target_key: ApiKey
    staff: User
    keys: dict[str, str] = field(default_factory=dict)

    def key_with(self, scopes: list[str], *, name: str = "test") -> str:
        _, raw = market.api_key_create(team=self.acme.team, actor=None, name=name, scopes=scopes)
        return raw


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    # Counters live in the cache (Redis in tests); a test must not inherit another's window.
    cache.clear()


@pytest.fixture
def world(acme, beta, clock, settings) -> World:
    settings.WEBHOOKS_ALLOW_HTTP = True
    return build_world(acme, beta, clock)


@pytest.fixture(scope="module")
def shared_world(django_db_setup, django_db_blocker):
    """One world for a whole module, inside an atomic block that is rolled back at the end; each
    test runs in a savepoint inside it (as Django's setUpTestData does)."""
    from django.db import transaction
    from django.test import override_settings

    from tests.conftest import _side

    with (
        django_db_blocker.unblock(),
        override_settings(WEBHOOKS_ALLOW_HTTP=True),
        time_machine.travel(T0, tick=False) as traveller,
    ):
        outer = transaction.atomic()
        outer.__enter__()
        try:
            yield build_world(_side("Acme"), _side("Beta"), traveller)
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


def build_world(acme, beta, clock) -> World:
    """Beta sells 16 H100s; round 1 cleared with Acme winning 8 of them; round 2 is open with
    another Acme bid; Acme has a webhook endpoint with one delivery and a key to kill."""
    round1 = rounds.round_open()
    start = round1.horizon_start
    offer_beta = market.offer_post(
        team=beta.team,
        actor=beta.trader,
        spec=OfferSpec(
            cluster_id=beta.cluster.pk,
            gpu_model="H100-SXM-80GB",
            gpus=16,
            start=start,
            end=start + 24 * H,
            reserve_cents_per_gpu_hour=150,
        ),
    )
    endpoint, _secret = market.webhook_endpoint_create(
        team=acme.team, actor=acme.owner, url="http://127.0.0.1:9/hook", events=["bid.won", "round.cleared"]
    )
    won = rounds.bid_submit(
        team=acme.team,
        actor=acme.trader,
        spec=BidSpec(
            gpu_models=("H100-SXM-80GB",),
            gpus=8,
            min_gpus=8,
            duration_hours=2,
            earliest_start=start,
            latest_end=start + 4 * H,
            colocate=True,
            limit_cents_per_gpu_hour=400,
        ),
        idempotency_key="won",
    ).order
    clock.move_to(round1.cutoff_at + dt.timedelta(seconds=1))
    rounds.round_close(round_id=round1.pk)
    assert rounds.round_clear(round_id=round1.pk) == "cleared"
    round2 = rounds.round_open()
    offer_acme = market.offer_post(
        team=acme.team,
        actor=acme.trader,
        spec=OfferSpec(
            cluster_id=acme.cluster.pk,
            gpu_model="H100-SXM-80GB",
            gpus=8,
            start=round2.horizon_start,
            end=round2.horizon_start + 24 * H,
            reserve_cents_per_gpu_hour=200,
        ),
    )
    target_key, _ = market.api_key_create(team=acme.team, actor=None, name="bot", scopes=["bids:write"])
    open_bid = rounds.bid_submit(
        team=acme.team,
        actor=None,
        spec=BidSpec(
            gpu_models=("H100-SXM-80GB",),
            gpus=4,
            min_gpus=4,
            duration_hours=2,
            earliest_start=round2.horizon_start,
            latest_end=round2.horizon_start + 8 * H,
            colocate=True,
            limit_cents_per_gpu_hour=250,
        ),
        idempotency_key="open",
        api_key=target_key,
    ).order
    won.refresh_from_db()
    lease = Lease.objects.get(bid=won)
    delivery = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("pk").first()
    assert delivery is not None
    staff = UserFactory(is_staff=True)
    del offer_beta
    return World(
        acme=acme,
        beta=beta,
        round=round2,
        start=round2.horizon_start,
        open_bid=open_bid,  # type: ignore[arg-type]
        won_bid=won,  # type: ignore[arg-type]
        offer=offer_acme,
        lease=lease,
        endpoint=endpoint,
        delivery=delivery,
        target_key=target_key,
        staff=staff,
    )


def key_client(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def session_client(user: User, *, team_slug: str | None = None, csrf: bool = False) -> APIClient:
    client = APIClient(enforce_csrf_checks=csrf)
    client.force_login(user)
    if team_slug:
        client.credentials(HTTP_GRIDX_TEAM=team_slug)
    return client
