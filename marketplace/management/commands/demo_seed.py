"""Seed the demo market (idempotent), or print the demo staff member's console code."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from marketplace.seed import (
    bot_keys_path,
    demo_market_seed,
    sellers_connect,
    staff_totp_code,
    staff_totp_secret,
)


class Command(BaseCommand):
    help = (
        "Seed a demo market: six teams, clusters, hosts, GPUs, offers, bids and the bots' API keys. "
        "Safe to run again: it creates nothing twice."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--staff-code",
            action="store_true",
            help="only print the demo staff member's current console (TOTP) code",
        )

        parser.add_argument(
            "--connect-sellers",
            action="store_true",
            help="only give the demo sellers Stripe Connect accounts (needs Stripe or the stand-in)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["connect_sellers"]:
            self.stdout.write(f"demo sellers with payouts enabled: {sellers_connect()}")
            return
        if options["staff_code"]:
            self.stdout.write(staff_totp_code())
            return
        created = demo_market_seed()
        self.stdout.write(
            f"demo market ready: {created['offers']} offers, {created['bids']} bids and "
            f"{created['api_keys']} bot API keys created (keys in {bot_keys_path()})"
        )
        self.stdout.write(f"staff console TOTP secret (base32): {staff_totp_secret()}")
