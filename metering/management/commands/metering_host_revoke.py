"""Revoke a host's agent keys and unused enrolment tokens."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from metering.management.commands.metering_token_create import _host
from metering.services import host_revoke


class Command(BaseCommand):
    help = "Revoke every key of a host: its agent's reports are refused (key_revoked) until it enrols again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("host", help="host id or hostname")

    def handle(self, *args: Any, **options: Any) -> None:
        host = _host(options["host"])
        revoked = host_revoke(team=host.cluster.team, actor=None, host_id=host.pk)
        self.stdout.write(f"host {host.hostname}: {revoked} key(s) revoked")
