"""Run simulated gridx-agents (fake backend) for the demo sellers' hosts until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from marketplace.models import Host
from marketplace.seed import SELLERS
from metering.agent.runner import Timing
from metering.demo import agents_run


class Command(BaseCommand):
    help = "Simulate a gridx-agent on every demo seller host, reporting to the demo server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--server", default="http://127.0.0.1:8000")
        parser.add_argument("--state-root", default=str(Path(settings.VAR_DIR) / "agents"))
        parser.add_argument("--sample-seconds", type=float, default=5.0)
        parser.add_argument("--interval-seconds", type=float, default=60.0)

    def handle(self, *args: Any, **options: Any) -> None:
        logging.basicConfig(level=logging.INFO, format="agents: %(message)s")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        teams = [name for name, _, _ in SELLERS]
        hosts = list(
            Host.objects.filter(cluster__team__name__in=teams, gpus__isnull=False)
            .distinct()
            .select_related("cluster__team")
            .order_by("id")
        )
        agents_run(
            hosts=hosts,
            server=options["server"],
            root=Path(options["state_root"]),
            stop=stop,
            timing=Timing(
                sample_seconds=options["sample_seconds"], interval_seconds=options["interval_seconds"]
            ),
        )
