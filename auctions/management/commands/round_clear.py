"""Clear a closed round synchronously, in this process."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from auctions.models import Round
from auctions.services import round_clear


class Command(BaseCommand):
    help = "Clear a closed round now, in this process (what the Celery task does)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("round_number", type=int)

    def handle(self, *args: object, **options: Any) -> None:
        round_ = Round.objects.filter(number=options["round_number"]).first()
        if round_ is None:
            raise CommandError(f"round {options['round_number']} does not exist")
        outcome = round_clear(round_id=round_.pk)
        round_.refresh_from_db()
        self.stdout.write(f"round {round_.number}: {outcome} (status {round_.status})")
        if outcome == "failed":
            raise CommandError(round_.error)
