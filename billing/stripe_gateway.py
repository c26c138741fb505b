"""The one module that imports `stripe`: a small interface over the calls Gridx makes.

Every mutating call takes an idempotency key derived from our own row. `STRIPE_API_BASE` points the
real library at the local stand-in (tests, demo); left empty, the same code talks to Stripe itself.
Amounts cross this boundary as integer cents, which is also Stripe's unit for USD.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import stripe
from django.conf import settings


class GatewayError(Exception):
    """Stripe refused or failed a call; `transient` errors are worth retrying later."""

    def __init__(self, message: str, *, code: str = "", transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


class PaymentDeclined(GatewayError):
    """The buyer's payment method was declined (a card error)."""


class SignatureError(Exception):
    """A webhook's signature, age or body did not verify."""


@dataclass(frozen=True)
class PaidInvoice:
    """An invoice Stripe reports paid, and the charge that paid it (empty for zero invoices)."""

    stripe_invoice_id: str
    charge_id: str
    amount_paid: int


def _plain(obj: Any) -> dict[str, Any]:
    result: dict[str, Any] = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return result


class StripeGateway:
    """Thin wrapper over `stripe.StripeClient`; errors become GatewayError or PaymentDeclined."""

    def __init__(self, *, api_key: str, api_base: str = "") -> None:
        bases: Any = {"api": api_base, "connect": api_base, "files": api_base} if api_base else None
        self.client = stripe.StripeClient(api_key, base_addresses=bases, max_network_retries=0)

    def _call(self, fn: Any, params: dict[str, Any] | None = None, key: str | None = None) -> dict[str, Any]:
        options: Any = {"idempotency_key": key} if key else {}
        try:
            return _plain(fn(params=params or {}, options=options))
        except stripe.CardError as exc:
            raise PaymentDeclined(str(exc.user_message or exc), code=exc.code or "card_declined") from exc
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise GatewayError(str(exc), code="unavailable", transient=True) from exc
        except stripe.StripeError as exc:
            status = exc.http_status or 0
            raise GatewayError(
                str(exc.user_message or exc), code=exc.code or "", transient=status >= 500
            ) from exc

    def _get(self, fn: Any, object_id: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            return _plain(fn(object_id, params=params or {}))
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise GatewayError(str(exc), code="unavailable", transient=True) from exc
        except stripe.StripeError as exc:
            raise GatewayError(str(exc.user_message or exc), code=exc.code or "") from exc

    # --- buyers ------------------------------------------------------------------------------------
    def customer_create(self, *, team_id: int, name: str, key: str) -> str:
        v1 = self.client.v1
        obj = self._call(v1.customers.create, {"name": name, "metadata": {"team_id": str(team_id)}}, key)
        return str(obj["id"])

    def setup_session_create(
        self, *, customer: str, success_url: str, cancel_url: str, key: str
    ) -> tuple[str, str]:
        params = {
            "mode": "setup",
            "customer": customer,
            "currency": "usd",
            "payment_method_types": ["card"],
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        obj = self._call(self.client.v1.checkout.sessions.create, params, key)
        return str(obj["id"]), str(obj["url"])

    def customer_card(self, *, customer: str) -> dict[str, Any] | None:
        """The customer's default payment method's card (`brand`, `last4`), or None when it has none."""
        found = self._get(self.client.v1.customers.retrieve, customer)
        method_id = (found.get("invoice_settings") or {}).get("default_payment_method")
        if not method_id:
            return None
        if isinstance(method_id, dict):  # expanded already
            return dict(method_id.get("card") or {})
        method = self._get(self.client.v1.payment_methods.retrieve, str(method_id))
        return dict(method.get("card") or {"brand": method.get("type", "card"), "last4": ""})

    def invoice_create(self, *, customer: str, currency: str, invoice_id: int, key: str) -> str:
        params = {
            "customer": customer,
            "currency": currency,
            "collection_method": "charge_automatically",
            "auto_advance": False,
            "pending_invoice_items_behavior": "exclude",
            "metadata": {"gridx_invoice_id": str(invoice_id)},
        }
        return str(self._call(self.client.v1.invoices.create, params, key)["id"])

    def invoice_item_add(
        self,
        *,
        customer: str,
        invoice: str,
        amount: int,
        currency: str,
        description: str,
        statement_id: int,
        key: str,
    ) -> str:
        params = {
            "customer": customer,
            "invoice": invoice,
            "amount": amount,
            "currency": currency,
            "description": description,
            "metadata": {"gridx_statement_id": str(statement_id)},
        }
        return str(self._call(self.client.v1.invoice_items.create, params, key)["id"])

    def invoice_finalize(self, *, invoice: str, key: str) -> dict[str, Any]:
        return self._call(
            lambda params, options: self.client.v1.invoices.finalize_invoice(invoice, params, options),
            {},
            key,
        )

    def invoice_pay(self, *, invoice: str, key: str) -> PaidInvoice:
        obj = self._call(
            lambda params, options: self.client.v1.invoices.pay(invoice, params, options), {}, key
        )
        return PaidInvoice(invoice, self.invoice_charge(invoice=invoice), int(obj.get("amount_paid") or 0))

    def invoice_retrieve(self, *, invoice: str) -> dict[str, Any]:
        return self._get(self.client.v1.invoices.retrieve, invoice)

    def invoice_charge(self, *, invoice: str) -> str:
        """The charge that paid an invoice: invoice payment -> payment intent -> latest charge."""
        payments = self._call(
            lambda params, options: self.client.v1.invoice_payments.list(params, options),
            {"invoice": invoice},
        )
        for payment in payments.get("data", []):
            intent_id = (payment.get("payment") or {}).get("payment_intent")
            if payment.get("status") == "paid" and intent_id:
                intent = self._get(self.client.v1.payment_intents.retrieve, intent_id)
                return str(intent.get("latest_charge") or "")
        return ""

    def invoices_list(self, *, customer: str) -> list[dict[str, Any]]:
        found = self._call(
            lambda params, options: self.client.v1.invoices.list(params, options),
            {"customer": customer, "limit": 100},
        )
        return list(found.get("data", []))

    # --- sellers -----------------------------------------------------------------------------------
    def account_create(self, *, team_id: int, key: str) -> str:
        params = {"type": "express", "metadata": {"team_id": str(team_id)}}
        return str(self._call(self.client.v1.accounts.create, params, key)["id"])

    def account_retrieve(self, *, account: str) -> dict[str, Any]:
        return self._get(self.client.v1.accounts.retrieve, account)

    def account_link_create(self, *, account: str, refresh_url: str, return_url: str) -> str:
        params = {
            "account": account,
            "refresh_url": refresh_url,
            "return_url": return_url,
            "type": "account_onboarding",
        }
        # Links expire within minutes; a fresh one each time is what Stripe expects, so no key.
        return str(self._call(self.client.v1.account_links.create, params)["url"])

    def transfer_create(
        self,
        *,
        amount: int,
        currency: str,
        destination: str,
        transfer_group: str,
        source_transaction: str,
        payout_id: int,
        key: str,
    ) -> str:
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency,
            "destination": destination,
            "transfer_group": transfer_group,
            "metadata": {"gridx_payout_id": str(payout_id)},
        }
        if source_transaction:
            params["source_transaction"] = source_transaction
        return str(self._call(self.client.v1.transfers.create, params, key)["id"])

    def transfer_retrieve(self, *, transfer: str) -> dict[str, Any]:
        return self._get(self.client.v1.transfers.retrieve, transfer)

    # --- corrections -------------------------------------------------------------------------------
    def refund_create(self, *, charge: str, amount: int, adjustment_id: int, key: str) -> str:
        params = {"charge": charge, "amount": amount, "metadata": {"gridx_adjustment_id": str(adjustment_id)}}
        return str(self._call(self.client.v1.refunds.create, params, key)["id"])

    def credit_note_create(
        self, *, invoice: str, amount: int, memo: str, adjustment_id: int, key: str
    ) -> str:
        params = {
            "invoice": invoice,
            "amount": amount,
            "credit_amount": amount,
            "memo": memo[:500],
            "metadata": {"gridx_adjustment_id": str(adjustment_id)},
        }
        return str(self._call(self.client.v1.credit_notes.create, params, key)["id"])


def construct_event(payload: bytes, signature: str, *, secret: str, tolerance: int) -> dict[str, Any]:
    """Verify a webhook (signature over `t.body`, age within `tolerance` s) and parse its event."""
    try:
        stripe.Webhook.construct_event(payload, signature, secret, tolerance=tolerance)
        # Stored as Stripe sent it: the library's objects turn numbers into Decimals.
        event: dict[str, Any] = json.loads(payload)
    except (stripe.SignatureVerificationError, ValueError) as exc:
        raise SignatureError(str(exc)) from exc
    return event


_override: StripeGateway | None = None


def gateway() -> StripeGateway:
    """The gateway configured by settings (tests may install one pointing at their stand-in)."""
    if _override is not None:
        return _override
    return StripeGateway(
        api_key=settings.STRIPE_API_KEY or "sk_test_standin", api_base=settings.STRIPE_API_BASE
    )


def install(gw: StripeGateway | None) -> None:
    """Use `gw` for every call until `install(None)` (tests and the stand-in demo only)."""
    global _override
    _override = gw
