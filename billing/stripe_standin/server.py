"""A small threaded HTTP server that answers the Stripe API calls Gridx makes, keeping state.

It honours idempotency keys as Stripe does (same key and parameters: the saved response, errors
included; other parameters: an `idempotency_error`), shapes objects after Stripe's own fixtures
(/work/shared/stripe/fixtures3.json when present, else a minimal shape), answers with Stripe-style
errors, and sends signed webhooks (`Stripe-Signature: t=…,v1=HMAC-SHA256("{t}.{body}")`).
Endpoints under /_standin/ play the part of a person (completing Checkout, onboarding, disputing).
It imports nothing from Django, so it runs as a plain process in the demo. State lives in memory
unless a state file is given: then it is loaded on start and rewritten after every change, so a
restarted demo still knows the customers and Connect accounts its database refers to.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import hmac
import json
import os
import queue
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

FIXTURES = Path(os.environ.get("STRIPE_FIXTURES", "/work/shared/stripe/fixtures3.json"))
Json = dict[str, Any]
Sink = Callable[[bytes, str], None]


class StripeError(Exception):
    """An error answered the way Stripe answers it: an HTTP status and an `error` object."""

    def __init__(self, status: int, type_: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type_, "message": message, **extra}}


def _nested(pairs: list[tuple[str, str]]) -> Json:
    """Form fields as Stripe encodes them (`a[b][0]=x`) back into nested dicts and lists."""
    out: Json = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return out


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header for a payload."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


STATE_VERSION = 1


class State:
    """Every object the stand-in holds, its saved idempotent responses and its events.

    With a `path`, the state is read from that file when it exists and `save()` rewrites it.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.lock = threading.RLock()
        self.path = path
        self.objects: dict[str, Json] = {}
        self.idempotent: dict[str, tuple[str, int, Json]] = {}
        self.events: list[Json] = []
        self.seq = 0
        # Where a person's browser returns after onboarding, by account (kept with the state so an
        # onboarding link made before a restart still leads back).
        self.return_urls: dict[str, str] = {}
        self.fixtures: Json = {}
        if FIXTURES.exists():
            self.fixtures = json.loads(FIXTURES.read_text())["resources"]
        if path is not None and path.exists():
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            saved = json.loads(path.read_text())
            if saved.get("version") != STATE_VERSION:
                raise ValueError(f"unknown version {saved.get('version')!r}")
            self.objects = saved["objects"]
            self.idempotent = {
                key: (fingerprint, int(status), body)
                for key, (fingerprint, status, body) in saved["idempotent"].items()
            }
            self.seq = int(saved["seq"])
            self.return_urls = saved.get("return_urls", {})
        except (ValueError, KeyError, TypeError) as exc:
            # Starting empty would silently forget what the database refers to; say so instead.
            raise SystemExit(f"stripe stand-in: cannot read state file {path}: {exc}") from exc

    def save(self) -> None:
        """Write the state to the file, atomically: a crash leaves the old file or the new one."""
        if self.path is None:
            return
        with self.lock:
            data = json.dumps(
                {
                    "version": STATE_VERSION,
                    "seq": self.seq,
                    "objects": self.objects,
                    "idempotent": {key: list(saved) for key, saved in self.idempotent.items()},
                    "return_urls": self.return_urls,
                }
            )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            with temp.open("w", encoding="utf-8") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.path)

    def new(self, kind: str, prefix: str, **fields: Any) -> Json:
        base: Json = copy.deepcopy(self.fixtures.get(kind, {}))
        for key in ("metadata",):
            base[key] = {}
        base.update(
            {
                "id": f"{prefix}_{self._next_seq():06d}standin",
                "object": kind,
                "created": int(time.time()),
                "livemode": False,
            }
        )
        base.update(fields)
        self.objects[base["id"]] = base
        return base

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def get(self, object_id: str, kind: str) -> Json:
        obj = self.objects.get(object_id)
        if obj is None or obj["object"] != kind:
            raise StripeError(
                404, "invalid_request_error", f"No such {kind}: '{object_id}'", code="resource_missing"
            )
        return obj

    def listing(self, kind: str, **match: Any) -> Json:
        data = [
            o
            for o in self.objects.values()
            if o["object"] == kind and all(o.get(k) == v for k, v in match.items() if v is not None)
        ]
        return {"object": "list", "data": data, "has_more": False, "url": f"/v1/{kind}s"}

    def event(self, type_: str, obj: Json) -> Json:
        return self.new(
            "event",
            "evt",
            type=type_,
            data={"object": copy.deepcopy(obj)},
            api_version="2025-10-29.clover",
            pending_webhooks=1,
            request={"id": None, "idempotency_key": None},
        )


class StandIn:
    """The server: start() in a thread (tests) or serve_forever() (the demo's process)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_url: str = "",
        webhook_secret: str = "",
        sink: Sink | None = None,
        demo: bool = False,
        state_file: str | Path | None = None,
    ) -> None:
        self.state = State(Path(state_file) if state_file else None)
        # Demo mode plays every person at once: customers come with a working card and accounts
        # are onboarded, so money flows without anyone clicking through Checkout or onboarding.
        self.demo = demo
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.sink = sink
        self.outbox: queue.Queue[Json] = queue.Queue()
        standin = self

        class Handler(_Handler):
            owner = standin

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._threads: list[threading.Thread] = []
        self.return_urls = self.state.return_urls

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> StandIn:
        for target in (self.httpd.serve_forever, self._deliver_forever):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.outbox.put({})

    def emit(self, type_: str, obj: Json) -> None:
        event = self.state.event(type_, obj)
        if self.sink is not None:
            # Tests get each event at once, signed, in the order it happened.
            payload = json.dumps(event).encode()
            self.sink(payload, sign(payload, self.webhook_secret))
        elif self.webhook_url:
            self.outbox.put(event)

    def _deliver_forever(self) -> None:
        while True:
            event = self.outbox.get()
            if not event:
                return
            payload = json.dumps(event).encode()
            for delay in (0, 1, 2, 5, 10, 30):
                time.sleep(delay)
                request = urllib.request.Request(  # noqa: S310 (a local http URL we were given)
                    self.webhook_url,
                    data=payload,
                    headers={
                        "Content-Type": "application/json",
                        "Stripe-Signature": sign(payload, self.webhook_secret),
                    },
                )
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                        if answer.status < 300:
                            break
                except OSError:
                    continue

    # --- the API ------------------------------------------------------------------------------

    def handle(self, method: str, path: str, params: Json, idempotency_key: str) -> tuple[int, Json]:
        with self.state.lock:
            if method == "POST" and idempotency_key:
                fingerprint = json.dumps([path, params], sort_keys=True)
                saved = self.state.idempotent.get(idempotency_key)
                if saved is not None:
                    if saved[0] != fingerprint:
                        return 400, {
                            "error": {
                                "type": "idempotency_error",
                                "message": "Keys for idempotent requests can only be used with the same "
                                "parameters they were first used with. Try using a key other than "
                                f"'{idempotency_key}' if you meant to execute a different request.",
                            }
                        }
                    return saved[1], copy.deepcopy(saved[2])
            try:
                status, body = 200, self._route(method, path, params)
            except StripeError as exc:
                status, body = exc.status, exc.body
            if method == "POST" and idempotency_key:
                # Stripe saves the first answer, errors included, and replays it.
                self.state.idempotent[idempotency_key] = (fingerprint, status, copy.deepcopy(body))
            if method == "POST":
                # Every change is a POST (GETs only read); a replayed answer returned above changes nothing.
                self.state.save()
            return status, copy.deepcopy(body)

    def _route(self, method: str, path: str, p: Json) -> Json:
        for pattern, verb, fn in self._routes():
            m = re.fullmatch(pattern, path)
            if m and verb == method:
                answer: Json = fn(p, *m.groups())
                return answer
        raise StripeError(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path})")

    def _routes(self) -> list[tuple[str, str, Callable[..., Json]]]:
        s = self.state
        return [
            (r"/v1/customers", "POST", self._customer_create),
            (r"/v1/customers/([^/]+)", "GET", lambda p, i: s.get(i, "customer")),
            (r"/v1/payment_methods/([^/]+)", "GET", lambda p, i: s.get(i, "payment_method")),
            (r"/v1/checkout/sessions", "POST", self._checkout_create),
            (r"/v1/checkout/sessions/([^/]+)", "GET", lambda p, i: s.get(i, "checkout.session")),
            (r"/v1/invoices", "POST", self._invoice_create),
            (r"/v1/invoices", "GET", lambda p: s.listing("invoice", customer=p.get("customer"))),
            (r"/v1/invoices/([^/]+)", "GET", lambda p, i: s.get(i, "invoice")),
            (r"/v1/invoices/([^/]+)/finalize", "POST", self._invoice_finalize),
            (r"/v1/invoices/([^/]+)/pay", "POST", self._invoice_pay),
            (r"/v1/invoiceitems", "POST", self._invoiceitem_create),
            (
                r"/v1/invoice_payments",
                "GET",
                lambda p: s.listing("invoice_payment", invoice=p.get("invoice")),
            ),
            (r"/v1/payment_intents/([^/]+)", "GET", lambda p, i: s.get(i, "payment_intent")),
            (r"/v1/charges/([^/]+)", "GET", lambda p, i: s.get(i, "charge")),
            (r"/v1/accounts", "POST", self._account_create),
            (r"/v1/accounts/([^/]+)", "GET", lambda p, i: s.get(i, "account")),
            (r"/v1/account_links", "POST", self._account_link),
            (r"/v1/transfers", "POST", self._transfer_create),
            (
                r"/v1/transfers",
                "GET",
                lambda p: s.listing("transfer", transfer_group=p.get("transfer_group")),
            ),
            (r"/v1/transfers/([^/]+)", "GET", lambda p, i: s.get(i, "transfer")),
            (r"/v1/refunds", "POST", self._refund_create),
            (r"/v1/credit_notes", "POST", self._credit_note_create),
            (r"/v1/events", "GET", lambda p: s.listing("event", type=p.get("type"))),
            (r"/v1/events/([^/]+)", "GET", lambda p, i: s.get(i, "event")),
            (r"/_standin/checkout/([^/]+)/complete", "POST", self._checkout_complete),
            (r"/_standin/accounts/([^/]+)/onboard", "POST", self._account_onboard),
            (r"/_standin/charges/([^/]+)/dispute", "POST", self._dispute),
        ]

    def _need(self, p: Json, *names: str) -> None:
        for name in names:
            if name not in p or p[name] == "":
                raise StripeError(
                    400, "invalid_request_error", f"Missing required param: {name}.", param=name
                )

    def _customer_create(self, p: Json) -> Json:
        customer = self.state.new(
            "customer",
            "cus",
            name=p.get("name"),
            email=p.get("email"),
            metadata=p.get("metadata", {}),
            balance=0,
            invoice_settings={"default_payment_method": None, "custom_fields": None, "footer": None},
        )
        if self.demo:
            pm = self.state.new(
                "payment_method",
                "pm",
                type="card",
                customer=customer["id"],
                card={"brand": "visa", "last4": "4242"},
            )
            customer["invoice_settings"]["default_payment_method"] = pm["id"]
        return customer

    def _checkout_create(self, p: Json) -> Json:
        self._need(p, "mode", "customer", "success_url")
        if p["mode"] != "setup":
            raise StripeError(
                400, "invalid_request_error", "The stand-in supports mode=setup only.", param="mode"
            )
        self.state.get(p["customer"], "customer")
        session = self.state.new(
            "checkout.session",
            "cs",
            mode="setup",
            customer=p["customer"],
            success_url=p["success_url"],
            cancel_url=p.get("cancel_url"),
            status="open",
            setup_intent=None,
            payment_intent=None,
            currency=p.get("currency"),
            metadata=p.get("metadata", {}),
        )
        session["url"] = f"{self.url}/_standin/checkout/{session['id']}/complete"
        return session

    def _checkout_complete(self, p: Json, session_id: str) -> Json:
        session = self.state.get(session_id, "checkout.session")
        customer = self.state.get(session["customer"], "customer")
        card = p.get("card", "ok")
        pm = self.state.new(
            "payment_method",
            "pm",
            type="card",
            customer=customer["id"],
            card={"brand": "visa", "last4": "4242"},
        )
        pm["standin_declines"] = card == "declined"
        intent = self.state.new(
            "setup_intent", "seti", customer=customer["id"], payment_method=pm["id"], status="succeeded"
        )
        customer["invoice_settings"]["default_payment_method"] = pm["id"]
        session.update(status="complete", setup_intent=intent["id"])
        self.emit("checkout.session.completed", session)
        return session

    def _invoice_create(self, p: Json) -> Json:
        self._need(p, "customer")
        self.state.get(p["customer"], "customer")
        return self.state.new(
            "invoice",
            "in",
            customer=p["customer"],
            currency=p.get("currency", "usd"),
            status="draft",
            auto_advance=p.get("auto_advance") == "true",
            collection_method=p.get("collection_method", "charge_automatically"),
            metadata=p.get("metadata", {}),
            description=p.get("description"),
            lines={"object": "list", "data": [], "has_more": False},
            amount_due=0,
            amount_paid=0,
            amount_remaining=0,
            subtotal=0,
            total=0,
            attempt_count=0,
            attempted=False,
            number=None,
            status_transitions={"finalized_at": None, "paid_at": None, "voided_at": None},
        )

    def _invoiceitem_create(self, p: Json) -> Json:
        self._need(p, "customer", "amount", "currency")
        self.state.get(p["customer"], "customer")
        amount = int(p["amount"])
        item = self.state.new(
            "invoiceitem",
            "ii",
            customer=p["customer"],
            amount=amount,
            currency=p["currency"],
            description=p.get("description"),
            metadata=p.get("metadata", {}),
            invoice=p.get("invoice"),
        )
        if p.get("invoice"):
            invoice = self.state.get(p["invoice"], "invoice")
            if invoice["status"] != "draft":
                raise StripeError(
                    400, "invalid_request_error", "This invoice is no longer a draft.", param="invoice"
                )
            invoice["lines"]["data"].append(
                {
                    "id": f"il_{item['id']}",
                    "object": "line_item",
                    "amount": amount,
                    "currency": p["currency"],
                    "description": item["description"],
                    "metadata": item["metadata"],
                }
            )
            total = sum(line["amount"] for line in invoice["lines"]["data"])
            invoice.update(
                subtotal=total, total=total, amount_due=max(total, 0), amount_remaining=max(total, 0)
            )
        return item

    def _invoice_finalize(self, p: Json, invoice_id: str) -> Json:
        invoice = self.state.get(invoice_id, "invoice")
        if invoice["status"] != "draft":
            raise StripeError(
                400,
                "invalid_request_error",
                "This invoice is already finalized.",
                code="invoice_not_editable",
            )
        invoice.update(status="open", number=f"GRIDX-{invoice_id[-14:-8]}")
        invoice["status_transitions"]["finalized_at"] = int(time.time())
        self.emit("invoice.finalized", invoice)
        return invoice

    def _invoice_pay(self, p: Json, invoice_id: str) -> Json:
        invoice = self.state.get(invoice_id, "invoice")
        if invoice["status"] == "paid":
            raise StripeError(
                400, "invalid_request_error", "Invoice is already paid.", code="invoice_already_paid"
            )
        if invoice["status"] != "open":
            raise StripeError(
                400, "invalid_request_error", "Only open invoices can be paid.", code="invoice_not_open"
            )
        customer = self.state.get(invoice["customer"], "customer")
        invoice["attempt_count"] += 1
        invoice["attempted"] = True
        amount = invoice["amount_due"]
        pm_id = customer["invoice_settings"]["default_payment_method"]
        pm = self.state.objects.get(pm_id) if pm_id else None
        if amount > 0 and (pm is None or pm.get("standin_declines")):
            self.emit("invoice.payment_failed", invoice)
            raise StripeError(
                402,
                "card_error",
                "Your card was declined.",
                code="card_declined",
                decline_code="generic_decline",
            )
        if amount > 0:
            charge = self.state.new(
                "charge",
                "ch",
                amount=amount,
                currency=invoice["currency"],
                customer=customer["id"],
                paid=True,
                status="succeeded",
                amount_refunded=0,
                refunded=False,
                disputed=False,
            )
            intent = self.state.new(
                "payment_intent",
                "pi",
                amount=amount,
                currency=invoice["currency"],
                customer=customer["id"],
                status="succeeded",
                latest_charge=charge["id"],
                payment_method=pm_id,
            )
            charge["payment_intent"] = intent["id"]
            self.state.new(
                "invoice_payment",
                "inpay",
                invoice=invoice_id,
                amount_paid=amount,
                amount_requested=amount,
                currency=invoice["currency"],
                status="paid",
                is_default=True,
                payment={"type": "payment_intent", "payment_intent": intent["id"]},
            )
        invoice.update(status="paid", amount_paid=amount, amount_remaining=0)
        invoice["status_transitions"]["paid_at"] = int(time.time())
        self.emit("invoice.paid", invoice)
        return invoice

    def _account_create(self, p: Json) -> Json:
        account = self.state.new(
            "account",
            "acct",
            type=p.get("type", "express"),
            country=p.get("country", "US"),
            email=p.get("email"),
            metadata=p.get("metadata", {}),
            details_submitted=False,
            payouts_enabled=False,
            charges_enabled=False,
        )
        if self.demo:
            account.update(details_submitted=True, payouts_enabled=True, charges_enabled=True)
            self.emit("account.updated", account)
        return account

    def _account_link(self, p: Json) -> Json:
        self._need(p, "account", "refresh_url", "return_url", "type")
        self.state.get(p["account"], "account")
        # Where the person goes back to after onboarding in a browser (the _standin page).
        self.return_urls[p["account"]] = p["return_url"]
        link: Json = copy.deepcopy(self.state.fixtures.get("account_link", {}))
        link.update(
            object="account_link",
            created=int(time.time()),
            expires_at=int(time.time()) + 300,
            url=f"{self.url}/_standin/accounts/{p['account']}/onboard",
        )
        return link

    def _account_onboard(self, p: Json, account_id: str) -> Json:
        account = self.state.get(account_id, "account")
        account.update(details_submitted=True, payouts_enabled=True, charges_enabled=True)
        self.emit("account.updated", account)
        return account

    def _transfer_create(self, p: Json) -> Json:
        self._need(p, "amount", "currency", "destination")
        account = self.state.get(p["destination"], "account")
        if not account["payouts_enabled"]:
            raise StripeError(
                400,
                "invalid_request_error",
                "The destination account cannot receive transfers.",
                param="destination",
            )
        amount = int(p["amount"])
        if p.get("source_transaction"):
            charge = self.state.get(p["source_transaction"], "charge")
            if charge["currency"] != p["currency"]:
                raise StripeError(
                    400,
                    "invalid_request_error",
                    "Currency must match the source transaction.",
                    param="currency",
                )
        transfer = self.state.new(
            "transfer",
            "tr",
            amount=amount,
            currency=p["currency"],
            destination=p["destination"],
            transfer_group=p.get("transfer_group"),
            source_transaction=p.get("source_transaction"),
            metadata=p.get("metadata", {}),
            amount_reversed=0,
            reversed=False,
            reversals={"object": "list", "data": [], "has_more": False},
        )
        self.emit("transfer.created", transfer)
        return transfer

    def _refund_create(self, p: Json) -> Json:
        self._need(p, "charge")
        charge = self.state.get(p["charge"], "charge")
        amount = int(p.get("amount", charge["amount"] - charge["amount_refunded"]))
        if amount <= 0 or amount > charge["amount"] - charge["amount_refunded"]:
            raise StripeError(
                400,
                "invalid_request_error",
                "Refund amount is greater than unrefunded amount on charge.",
                param="amount",
            )
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        refund = self.state.new(
            "refund",
            "re",
            amount=amount,
            charge=charge["id"],
            currency=charge["currency"],
            status="succeeded",
            payment_intent=charge.get("payment_intent"),
            metadata=p.get("metadata", {}),
            reason=p.get("reason"),
        )
        self.emit("charge.refunded", charge)
        self.emit("refund.created", refund)
        return refund

    def _credit_note_create(self, p: Json) -> Json:
        self._need(p, "invoice", "amount")
        invoice = self.state.get(p["invoice"], "invoice")
        amount = int(p["amount"])
        if invoice["status"] not in {"open", "paid"}:
            raise StripeError(
                400, "invalid_request_error", "Credit notes need a finalized invoice.", param="invoice"
            )
        customer = self.state.get(invoice["customer"], "customer")
        customer["balance"] -= amount
        note = self.state.new(
            "credit_note",
            "cn",
            invoice=invoice["id"],
            customer=customer["id"],
            amount=amount,
            total=amount,
            subtotal=amount,
            currency=invoice["currency"],
            status="issued",
            reason=p.get("reason"),
            memo=p.get("memo"),
            metadata=p.get("metadata", {}),
            type="post_payment" if invoice["status"] == "paid" else "pre_payment",
        )
        self.emit("credit_note.created", note)
        return note

    def _dispute(self, p: Json, charge_id: str) -> Json:
        charge = self.state.get(charge_id, "charge")
        charge["disputed"] = True
        dispute = self.state.new(
            "dispute",
            "dp",
            charge=charge_id,
            amount=charge["amount"],
            currency=charge["currency"],
            status="needs_response",
            reason=p.get("reason", "general"),
        )
        self.emit("charge.dispute.created", dispute)
        return dispute


class _Handler(BaseHTTPRequestHandler):
    owner: StandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        return

    def _person_page(self, path: str) -> bool:
        """In a browser, Checkout's and onboarding's URLs show a page where the person acts."""
        if re.fullmatch(r"/_standin/checkout/[^/]+/complete", path):
            title = "Save a card (Stripe stand-in)"
            choices = (
                '<button name="card" value="ok">Save a card that pays</button> '
                '<button name="card" value="declined">Save a card that is declined</button>'
            )
        elif re.fullmatch(r"/_standin/accounts/[^/]+/onboard", path):
            title = "Onboard to payouts (Stripe stand-in)"
            choices = '<button name="onboard" value="yes">Submit details and enable payouts</button>'
        else:
            return False
        page = (
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
            f'<body><h1>{title}</h1><form method="post" action="{path}">'
            f'<input type="hidden" name="redirect" value="1">{choices}</form></body></html>'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)
        return True

    def _back_to(self, path: str, answer: Json) -> str:
        """Where a person's browser goes once the stand-in page is done (as Stripe sends it back)."""
        if path.startswith("/_standin/checkout/"):
            return str(answer.get("success_url") or "")
        if path.startswith("/_standin/accounts/"):
            return self.owner.return_urls.get(str(answer.get("id")), "")
        return ""

    def _answer(self, method: str) -> None:
        parts = urlsplit(self.path)
        if method == "GET" and self._person_page(parts.path):
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        pairs = parse_qsl(parts.query, keep_blank_values=True) + parse_qsl(body, keep_blank_values=True)
        if not parts.path.startswith("/_standin/") and not (
            self.headers.get("Authorization") or ""
        ).startswith("Bearer sk_"):
            status, answer = (
                401,
                {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided."}},
            )
        else:
            status, answer = self.owner.handle(
                method, parts.path, _nested(pairs), self.headers.get("Idempotency-Key") or ""
            )
        if status == 200 and dict(pairs).get("redirect") and (target := self._back_to(parts.path, answer)):
            self.send_response(303)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", f"req_standin_{time.monotonic_ns()}")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stripe_standin", description="Run the local Stripe stand-in.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--webhook-url", default=os.environ.get("STRIPE_STANDIN_WEBHOOK_URL", ""))
    parser.add_argument("--webhook-secret", default=os.environ.get("STRIPE_WEBHOOK_SECRET", ""))
    parser.add_argument("--demo", action="store_true", help="cards saved and accounts onboarded at once")
    parser.add_argument(
        "--state-file", default="", help="keep the state in this JSON file across restarts (default: memory)"
    )
    args = parser.parse_args(argv)
    standin = StandIn(
        host=args.host,
        port=args.port,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        demo=args.demo,
        state_file=args.state_file or None,
    )
    threading.Thread(target=standin._deliver_forever, daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        standin.httpd.serve_forever()
    return 0
