"""Check a bid's receipt and inclusion proof (the JSON a team fetches for its bid)."""

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from auctions.verify import verify_receipt


class Command(BaseCommand):
    help = "Verify PROOF.json ({document, receipt, proof, root}) against the round's Merkle root."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("proof_file")

    def handle(self, *args: object, **options: Any) -> None:
        try:
            data = json.loads(Path(options["proof_file"]).read_text())
            verdict = verify_receipt(
                receipt_document=data["document"],
                receipt=data["receipt"],
                proof=data["proof"],
                root=data["root"],
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CommandError(f"cannot read the proof file: {exc}") from None
        for what in verdict.checked:
            self.stdout.write(("FAIL " if what in verdict.failures else "ok   ") + what)
        if not verdict.ok:
            raise CommandError("the receipt does not verify")
