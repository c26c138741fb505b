"""Write a round's snapshot, result and report to files, for audit and `gridx clear`."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from auctions.models import Round


class Command(BaseCommand):
    help = "Export round N as round-N.json (gridx.round/v1), result-N.json and report-N.json."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("round_number", type=int)
        parser.add_argument("--dir", default=".", help="folder to write into (default: current)")

    def handle(self, *args: object, **options: Any) -> None:
        round_ = Round.objects.filter(number=options["round_number"]).first()
        if round_ is None:
            raise CommandError(f"round {options['round_number']} does not exist")
        if not round_.snapshot:
            raise CommandError(f"round {round_.number} is still open: it has no snapshot yet")
        folder = Path(options["dir"])
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in (("round", round_.snapshot), ("result", round_.result), ("report", round_.report)):
            if text:
                path = folder / f"{name}-{round_.number}.json"
                path.write_text(text)
                self.stdout.write(str(path))
