"""`manage.py stripe_standin`: run the local Stripe stand-in (demo and manual testing only)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from billing.stripe_standin.server import main


class Command(BaseCommand):
    help = "Run the local Stripe stand-in, sending signed webhooks to our endpoint."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=12111)
        parser.add_argument("--webhook-url", default="http://127.0.0.1:8000/billing/stripe/webhook")
        parser.add_argument("--state-file", default="", help="keep the state in this file across restarts")

    def handle(self, *args: Any, **options: Any) -> None:
        main(
            [
                "--port",
                str(options["port"]),
                "--webhook-url",
                options["webhook_url"],
                "--webhook-secret",
                settings.STRIPE_WEBHOOK_SECRET,
                "--state-file",
                options["state_file"],
            ]
        )
