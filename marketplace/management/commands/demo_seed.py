"""Seed the demo market (idempotent)."""

from django.core.management.base import BaseCommand

from marketplace.seed import demo_market_seed


class Command(BaseCommand):
    help = "Seed a small demo market: teams, clusters, hosts, GPUs, offers and bids. Safe to run again."

    def handle(self, *args: object, **options: object) -> None:
        created = demo_market_seed()
        self.stdout.write(f"demo market ready: {created['offers']} offers and {created['bids']} bids created")
