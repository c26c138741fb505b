"""Compare our invoices, payouts and ledger with Stripe; report every difference, fix none."""

from __future__ import annotations

from .ledger import ledger_violations
from .models import BillingCustomer, Invoice, InvoiceStatus, LedgerTransaction, Payout, PayoutStatus
from .stripe_gateway import GatewayError, gateway

STRIPE_STATUS: dict[str, set[str]] = {
    InvoiceStatus.PAID: {"paid"},
    InvoiceStatus.FINALIZED: {"open"},
    InvoiceStatus.FAILED: {"open"},
    InvoiceStatus.ITEMIZED: {"draft"},
    InvoiceStatus.CREATED: {"draft"},
}


def reconcile() -> list[str]:
    """Every discrepancy between the ledger, our rows and Stripe, in words."""
    problems = [f"ledger: {p}" for p in ledger_violations()]
    gw = gateway()
    known: set[str] = set()
    for invoice in Invoice.objects.exclude(stripe_invoice_id="").order_by("pk"):
        known.add(invoice.stripe_invoice_id)
        try:
            remote = gw.invoice_retrieve(invoice=invoice.stripe_invoice_id)
        except GatewayError as exc:
            problems.append(f"invoice {invoice.pk}: Stripe has no {invoice.stripe_invoice_id} ({exc})")
            continue
        expected = STRIPE_STATUS.get(invoice.status)
        if expected is not None and remote.get("status") not in expected:
            problems.append(
                f"invoice {invoice.pk}: ours is {invoice.status}, Stripe's is {remote.get('status')}"
            )
        if invoice.status == InvoiceStatus.PAID:
            if remote.get("amount_paid") != invoice.amount_cents:
                problems.append(
                    f"invoice {invoice.pk}: Stripe was paid {remote.get('amount_paid')}, we expect "
                    f"{invoice.amount_cents}"
                )
            if not LedgerTransaction.objects.filter(idempotency_key=f"invoice:{invoice.pk}:paid").exists():
                problems.append(f"invoice {invoice.pk}: paid but no ledger payment")
        elif remote.get("status") == "paid":
            problems.append(f"invoice {invoice.pk}: Stripe says paid, we say {invoice.status}")
    for customer in BillingCustomer.objects.order_by("pk"):
        for remote in gw.invoices_list(customer=customer.stripe_customer_id):
            if remote["id"] not in known:
                problems.append(f"Stripe invoice {remote['id']} of team {customer.team_id} is unknown to us")
    for payout in Payout.objects.order_by("pk"):
        if payout.status in (PayoutStatus.SENT, PayoutStatus.PAID):
            try:
                transfer = gw.transfer_retrieve(transfer=payout.stripe_transfer_id)
            except GatewayError as exc:
                problems.append(
                    f"payout {payout.pk}: Stripe has no transfer {payout.stripe_transfer_id} ({exc})"
                )
                continue
            if transfer.get("amount") != payout.amount_cents:
                problems.append(
                    f"payout {payout.pk}: transfer of {transfer.get('amount')}, we owe {payout.amount_cents}"
                )
            if payout.transaction_id is None:
                problems.append(f"payout {payout.pk}: transferred but no ledger entry")
        elif payout.transaction_id is not None:
            problems.append(f"payout {payout.pk}: ledger entry but no transfer ({payout.status})")
    return problems
