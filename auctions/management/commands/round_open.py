"""Open a round now if none is open."""

from django.core.management.base import BaseCommand

from auctions.services import round_open


class Command(BaseCommand):
    help = "Open an auction round if none is open (the beat does this on its own)."

    def handle(self, *args: object, **options: object) -> None:
        round_ = round_open()
        self.stdout.write(f"round {round_.number} is open until {round_.cutoff_at:%Y-%m-%d %H:%M:%S}Z")
