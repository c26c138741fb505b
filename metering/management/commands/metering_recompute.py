"""Recompute delivery results and stopped-GPU anomalies (what the beat task does every minute)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from metering.services import deliveries_recompute, delivery_compute


class Command(BaseCommand):
    help = "Recompute verified delivery for one lease, or for every recent lease."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--lease", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["lease"] is not None:
            for r in delivery_compute(lease_id=options["lease"]):
                self.stdout.write(
                    f"lease {r.lease_id} gpu {r.gpu_id}: delivered {r.delivered_ms // 1000}"
                    f" of {r.leased_ms // 1000} s"
                    f"{'' if r.complete else ' (not final)'}"
                )
            return
        self.stdout.write(f"{deliveries_recompute()} lease(s) recomputed")
