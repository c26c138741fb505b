"""Print a single-use enrolment token for a seller host (shown once; only its hash is stored)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from marketplace.errors import DomainError
from marketplace.models import Host
from metering.services import enrolment_token_create, key_rotate


class Command(BaseCommand):
    help = "Create an enrolment token for a host: gridx-agent enroll --server URL --token TOKEN."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("host", help="host id or hostname")
        parser.add_argument("--ttl", type=int, default=None, help="seconds until the token expires")
        parser.add_argument(
            "--rotate", action="store_true", help="for a key rotation (the agent enrols again with --force)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host = _host(options["host"])
        make = key_rotate if options["rotate"] else enrolment_token_create
        try:
            issued = make(team=host.cluster.team, actor=None, host_id=host.pk, ttl_s=options["ttl"])
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(
            f"token for host {host.hostname} (id {host.pk}), expires {issued.expires_at:%Y-%m-%d %H:%M} UTC:"
        )
        self.stdout.write(issued.token)


def _host(ref: str) -> Host:
    qs = Host.objects.select_related("cluster__team")
    host = qs.filter(pk=int(ref)).first() if ref.isdigit() else None
    if host is None:
        matches = list(qs.filter(hostname=ref)[:2])
        if len(matches) != 1:
            raise CommandError(f"no single host is called {ref!r}: give its id")
        host = matches[0]
    return host
