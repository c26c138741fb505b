"""The staff billing console: thin views over billing services and selectors, behind TOTP."""

from __future__ import annotations

import csv
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.db.models import QuerySet, Sum
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from marketplace.errors import DomainError
from metering.selectors import anomaly_list
from metering.services import anomaly_resolve

from . import services, totp
from .models import (
    Account,
    AccountKind,
    Adjustment,
    AuditEntry,
    BillingStanding,
    Invoice,
    InvoiceStatus,
    Payout,
    PayoutStatus,
    Statement,
    StripeEvent,
)

SESSION_KEY = "console_2fa_user"
View = Callable[..., HttpResponse]


def staff_2fa(view: View) -> View:
    """Staff only (others get 404, the console does not exist for them), with a verified TOTP code."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request.user
        if not user.is_authenticated:
            return HttpResponseRedirect(f"/admin/login/?next={request.path}")
        if not user.is_staff:
            raise Http404("No console here.")
        if request.session.get(SESSION_KEY) != user.pk:
            return HttpResponseRedirect(reverse("console-otp") + f"?next={request.path}")
        return view(request, *args, **kwargs)

    return wrapped


def otp(request: HttpRequest) -> HttpResponse:
    """Set up (first time) or enter the staff member's TOTP code."""
    user = request.user
    if not user.is_authenticated or not user.is_staff:
        raise Http404("No console here.")
    device = totp.device_for(user)
    error = ""
    if request.method == "POST":
        if totp.verify(device, request.POST.get("code", "").strip()):
            request.session.cycle_key()
            request.session[SESSION_KEY] = user.pk
            services.audit(actor=user, action="console.2fa_verified")
            target = request.GET.get("next", "")
            return HttpResponseRedirect(
                target if target.startswith("/console/") else reverse("console-overview")
            )
        error = "That code is not valid (or was already used)."
    uri = "" if device.confirmed else totp.provisioning_uri(device, user.get_username())
    return render(request, "console/otp.html", {"uri": uri, "error": error})


def _sum(qs: QuerySet[Any], field: str) -> int:
    return int(qs.aggregate(s=Sum(field))["s"] or 0)


@staff_2fa
def overview(request: HttpRequest) -> HttpResponse:
    figures = {
        "Money traded (charges, cents)": _sum(Statement.objects.all(), "charge_cents"),
        "Platform fees (cents)": _sum(Statement.objects.all(), "fee_cents"),
        "Credits granted (cents)": _sum(Statement.objects.all(), "credit_cents"),
        "Receivables outstanding (cents)": _sum(
            Account.objects.filter(kind=AccountKind.RECEIVABLE, balance_cents__gt=0), "balance_cents"
        ),
        "Payouts due (cents)": _sum(
            Payout.objects.filter(status__in=[PayoutStatus.PENDING, PayoutStatus.HELD]), "amount_cents"
        ),
        "Failed payments": Invoice.objects.filter(status=InvoiceStatus.FAILED).count(),
        "Disputes": StripeEvent.objects.filter(type="charge.dispute.created").count(),
    }
    return render(request, "console/overview.html", {"figures": figures})


# Every list: its queryset and columns (header, attribute path). Any list exports as CSV.
LISTS: dict[str, tuple[str, Callable[[HttpRequest], QuerySet[Any]], list[tuple[str, str]]]] = {
    "invoices": (
        "Invoices",
        lambda r: Invoice.objects.select_related("team").order_by("-id"),
        [
            ("id", "pk"),
            ("team", "team.name"),
            ("period", "period_start"),
            ("status", "status"),
            ("amount_cents", "amount_cents"),
            ("stripe", "stripe_invoice_id"),
        ],
    ),
    "statements": (
        "Statements",
        lambda r: Statement.objects.select_related("team").order_by("-id"),
        [
            ("id", "pk"),
            ("lease", "lease_id"),
            ("day", "day"),
            ("seq", "seq"),
            ("team", "team.name"),
            ("leased_s", "leased_gpu_seconds"),
            ("delivered_s", "delivered_gpu_seconds"),
            ("anomalies", "open_anomalies"),
            ("charge", "charge_cents"),
            ("credit", "credit_cents"),
            ("fee", "fee_cents"),
            ("invoice", "invoice_id"),
        ],
    ),
    "payouts": (
        "Payouts",
        lambda r: Payout.objects.select_related("seller").order_by("-id"),
        [
            ("id", "pk"),
            ("seller", "seller.name"),
            ("invoice", "invoice_id"),
            ("amount_cents", "amount_cents"),
            ("status", "status"),
            ("transfer", "stripe_transfer_id"),
        ],
    ),
    "failed": (
        "Failed payments and suspended teams",
        lambda r: BillingStanding.objects.select_related("team").filter(failing_since__isnull=False),
        [("team", "team.name"), ("failing_since", "failing_since"), ("warned_at", "warned_at")],
    ),
    "adjustments": (
        "Adjustments",
        lambda r: Adjustment.objects.select_related("requested_by", "approved_by").order_by("-id"),
        [
            ("id", "pk"),
            ("invoice", "invoice_id"),
            ("kind", "kind"),
            ("amount_cents", "amount_cents"),
            ("status", "status"),
            ("reason", "reason"),
            ("requested_by", "requested_by.email"),
            ("approved_by", "approved_by.email"),
        ],
    ),
    "anomalies": (
        "Metering anomalies",
        lambda r: anomaly_list(status=r.GET.get("status") or None),
        [
            ("id", "pk"),
            ("kind", "kind"),
            ("status", "status"),
            ("lease", "lease_id"),
            ("gpu", "gpu_id"),
            ("start", "start"),
            ("end", "end"),
        ],
    ),
    "events": (
        "Stripe events",
        lambda r: StripeEvent.objects.order_by("-id"),
        [("id", "stripe_id"), ("type", "type"), ("status", "status"), ("received", "received_at")],
    ),
    "audit": (
        "Audit log",
        lambda r: AuditEntry.objects.select_related("actor").order_by("-id"),
        [
            ("at", "at"),
            ("actor", "actor.email"),
            ("action", "action"),
            ("object", "object_type"),
            ("object_id", "object_id"),
            ("detail", "detail"),
        ],
    ),
}


def _value(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return ""
    return obj


@staff_2fa
def listing(request: HttpRequest, name: str) -> HttpResponse:
    if name not in LISTS:
        raise Http404("No such list.")
    title, query, columns = LISTS[name]
    qs = query(request)
    rows = [[_value(obj, path) for _, path in columns] for obj in qs[:5000]]
    if request.GET.get("format") == "csv":
        services.audit(actor=request.user, action="console.export_csv", list=name)
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        writer = csv.writer(response)
        writer.writerow([header for header, _ in columns])
        writer.writerows(rows)
        return response
    return render(
        request,
        "console/list.html",
        {"title": title, "name": name, "headers": [h for h, _ in columns], "rows": rows, "lists": LISTS},
    )


@staff_2fa
def invoice_detail(request: HttpRequest, invoice_id: int) -> HttpResponse:
    invoice = Invoice.objects.filter(pk=invoice_id).select_related("team").first()
    if invoice is None:
        raise Http404("No such invoice.")
    statements = list(invoice.statements.select_related("lease").prefetch_related("payables__seller"))
    anomalies = {s.lease_id: list(anomaly_list(lease_id=s.lease_id)) for s in statements}
    return render(
        request,
        "console/invoice.html",
        {
            "invoice": invoice,
            "statements": statements,
            "anomalies": anomalies,
            "adjustments": invoice.adjustments.all(),
            "payouts": invoice.payouts.select_related("seller"),
        },
    )


def _act(request: HttpRequest, back: str, fn: Callable[[], Any]) -> HttpResponse:
    try:
        fn()
    except DomainError as exc:
        return render(
            request, "console/error.html", {"message": exc.message, "back": back}, status=exc.status
        )
    return HttpResponseRedirect(back)


@require_POST
@staff_2fa
def adjust(request: HttpRequest, invoice_id: int) -> HttpResponse:
    try:
        amount = int(request.POST.get("amount_cents", "0"))
    except ValueError:
        amount = 0
    return _act(
        request,
        reverse("console-invoice", args=[invoice_id]),
        lambda: services.adjustment_request(
            actor=request.user,
            invoice_id=invoice_id,
            kind=request.POST.get("kind", ""),
            amount_cents=amount,
            reason=request.POST.get("reason", ""),
        ),
    )


@require_POST
@staff_2fa
def approve(request: HttpRequest, adjustment_id: int) -> HttpResponse:
    return _act(
        request,
        reverse("console-list", args=["adjustments"]),
        lambda: services.adjustment_approve(actor=request.user, adjustment_id=adjustment_id),
    )


@require_POST
@staff_2fa
def resolve_anomaly(request: HttpRequest, anomaly_id: int) -> HttpResponse:
    def run() -> None:
        anomaly = anomaly_resolve(
            anomaly_id=anomaly_id,
            actor=request.user,  # type: ignore[arg-type]
            resolution=request.POST.get("resolution", ""),
            note=request.POST.get("note", ""),
        )
        services.audit(actor=request.user, action="anomaly.resolved", obj=anomaly, resolution=anomaly.status)

    return _act(request, reverse("console-list", args=["anomalies"]), run)
