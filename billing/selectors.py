"""Billing reads, including the check that the marketplace asks before a team places a bid."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone

from marketplace.errors import PermissionDenied
from marketplace.models import Team

from .models import BillingStanding


def team_may_bid(team: Team, *, now: dt.datetime | None = None) -> bool:
    """False once a team has failed to pay for BILLING_SUSPEND_AFTER_DAYS days; True again once it pays."""
    failing_since = BillingStanding.objects.filter(team=team).values_list("failing_since", flat=True).first()
    if failing_since is None:
        return True
    now = now or timezone.now()
    return now - failing_since < dt.timedelta(days=settings.BILLING_SUSPEND_AFTER_DAYS)


def bid_guard(team: Team) -> None:
    """Refuse new bids of a team suspended for failed payments (registered in BillingConfig.ready)."""
    if not team_may_bid(team):
        raise PermissionDenied(
            f"team {team.slug} cannot place bids: its payment has failed for "
            f"{settings.BILLING_SUSPEND_AFTER_DAYS} days or more; pay the open invoice to resume",
            code="billing_suspended",
        )
