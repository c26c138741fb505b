"""Benchmark report ingestion through the reports endpoint (run it on a throwaway database)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection
from django.test.utils import setup_test_environment

from metering.bench import bench


class Command(BaseCommand):
    help = (
        "Measure GPU-interval records/s through POST /api/v1/metering/reports into PostgreSQL, against "
        "per-row ORM inserts. Uses a fresh test database (settings' TEST NAME), dropped afterwards."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--records", type=int, default=200_000)
        parser.add_argument("--per-envelope", type=int, default=1000)
        parser.add_argument("--workers", type=int, default=2, help="server processes (one per core)")
        parser.add_argument(
            "--keep-db", action="store_true", help="measure in the configured database itself"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        setup_test_environment()  # the test client's host name, as under pytest
        old_name = None
        if not options["keep_db"]:
            old_name = connection.settings_dict["NAME"]
            connection.creation.create_test_db(verbosity=0, autoclobber=True)
        try:
            bench(
                records=options["records"],
                per_envelope=options["per_envelope"],
                workers=options["workers"],
                out=self.stdout.write,
            )
        finally:
            if old_name is not None:
                connection.creation.destroy_test_db(old_name, verbosity=0)
