"""Create a team API key and print it once (the web UI will do the same later)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from marketplace import services
from marketplace.errors import DomainError, InvalidInput
from marketplace.models import Scope, Team


class Command(BaseCommand):
    help = (
        "Create an API key for a team and print it. The key is shown only now; only its hash is stored. "
        f"Scopes: {', '.join(Scope.values)}."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", required=True, help="team slug")
        parser.add_argument("--name", required=True, help="what the key is for, e.g. 'pricing bot'")
        parser.add_argument(
            "--scopes",
            default="market:read,bids:write",
            help="comma-separated (default: market:read,bids:write)",
        )
        parser.add_argument("--expires-in-days", type=int, default=None)
        parser.add_argument(
            "--exposure-cap-cents", type=int, default=None, help="cap on open bids' limit x GPUs x h"
        )
        parser.add_argument("--rate-limit-per-minute", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        team = Team.objects.filter(slug=options["team"]).first()
        if team is None:
            known = ", ".join(Team.objects.values_list("slug", flat=True)[:20]) or "none yet"
            raise CommandError(f"--team: no team with slug {options['team']!r} (known: {known})")
        days = options["expires_in_days"]
        try:
            key, raw = services.api_key_create(
                team=team,
                actor=None,
                name=options["name"],
                scopes=[s.strip() for s in options["scopes"].split(",") if s.strip()],
                expires_at=timezone.now() + dt.timedelta(days=days) if days else None,
                exposure_cap_cents=options["exposure_cap_cents"],
                rate_limit_per_minute=options["rate_limit_per_minute"],
            )
        except InvalidInput as exc:
            raise CommandError(
                "; ".join(f"--{e.field.replace('_', '-')}: {e.message}" for e in exc.errors)
            ) from None
        except DomainError as exc:
            raise CommandError(exc.message) from None
        self.stderr.write(
            f"key {key.prefix} for team {team.slug} with scopes {', '.join(key.scopes)}; "
            "store it now, it is not shown again:"
        )
        self.stdout.write(raw)
