"""Verify a cleared round: hashes, the report chain, and that re-clearing reproduces it."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from auctions.models import Round, RoundStatus
from auctions.verify import verify_round


class Command(BaseCommand):
    help = "Check round N's published report against its snapshot, result, the chain, and a re-clearing."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("round_number", type=int)
        parser.add_argument("--no-reclear", action="store_true", help="skip re-running the engine")

    def handle(self, *args: object, **options: Any) -> None:
        round_ = Round.objects.filter(number=options["round_number"], status=RoundStatus.CLEARED).first()
        if round_ is None:
            raise CommandError(f"round {options['round_number']} is not a cleared round")
        previous = (
            Round.objects.filter(number__lt=round_.number, status=RoundStatus.CLEARED)
            .order_by("-number")
            .values_list("report", flat=True)
            .first()
        )
        verdict = verify_round(
            report_text=round_.report,
            snapshot_text=round_.snapshot,
            result_text=round_.result,
            previous_report_text=previous,
            reclear=not options["no_reclear"],
        )
        for what in verdict.checked:
            self.stdout.write(("FAIL " if what in verdict.failures else "ok   ") + what)
        if not verdict.ok:
            raise CommandError(f"round {round_.number} failed verification")
