"""A team whose payment keeps failing cannot place bids, by API or service, until it pays."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from billing.models import BillingStanding
from marketplace import services as market

from .conftest import bid_body, key_client


def test_a_suspended_team_cannot_bid_until_it_pays(world, settings):
    settings.BILLING_SUSPEND_AFTER_DAYS = 3
    _, raw = market.api_key_create(team=world.acme.team, actor=None, name="b", scopes=["bids:write"])
    bot = key_client(raw)
    standing, _ = BillingStanding.objects.get_or_create(team=world.acme.team)
    standing.failing_since = timezone.now() - dt.timedelta(days=1)
    standing.save()
    assert bot.post("/api/v1/bids", bid_body(world.start), format="json").status_code == 201  # warned only
    standing.failing_since = timezone.now() - dt.timedelta(days=3)
    standing.save()
    refused = bot.post("/api/v1/bids", bid_body(world.start), format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "billing_suspended"
    batch = bot.post("/api/v1/bids/batch", {"bids": [bid_body(world.start)]}, format="json")
    assert batch.status_code == 403
    standing.failing_since = None
    standing.save()
    assert bot.post("/api/v1/bids", bid_body(world.start), format="json").status_code == 201
