"""Close the open round when due, or at once with --now."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from auctions.models import Round, RoundStatus
from auctions.services import round_close, round_close_due


class Command(BaseCommand):
    help = "Close the open round if its cutoff has passed; --now closes it immediately."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--now", action="store_true", help="close the open round even before its cutoff")

    def handle(self, *args: object, **options: Any) -> None:
        if not options["now"]:
            self.stdout.write(str(round_close_due()))
            return
        open_round = Round.objects.filter(status=RoundStatus.OPEN).first()
        if open_round is None:
            raise CommandError("no round is open; run round_open first")
        closed = round_close(round_id=open_round.pk)
        if closed is None:
            raise CommandError(f"round {open_round.number} was closed by someone else meanwhile")
        self.stdout.write(f"round {closed.number} closed; snapshot {closed.snapshot_sha256}")
