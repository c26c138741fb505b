"""`manage.py ledger_check`: verify every ledger invariant; exit 1 on any violation."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing.ledger import ledger_violations


class Command(BaseCommand):
    help = "Verify every ledger invariant (balanced transactions, balances, no overdraft); exit 1 on any."

    def handle(self, *args: Any, **options: Any) -> None:
        problems = ledger_violations()
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise CommandError(f"{len(problems)} ledger violation(s)", returncode=1)
        self.stdout.write("ledger ok")
