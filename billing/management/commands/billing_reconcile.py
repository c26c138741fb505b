"""`manage.py billing_reconcile`: compare the ledger with Stripe; exit 1 on any discrepancy."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing.reconcile import reconcile


class Command(BaseCommand):
    help = "Compare the ledger and our invoices and payouts with Stripe; report, never fix."

    def handle(self, *args: Any, **options: Any) -> None:
        problems = reconcile()
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise CommandError(f"{len(problems)} discrepancy(ies); nothing was changed", returncode=1)
        self.stdout.write("billing reconciled: ledger and Stripe agree")
