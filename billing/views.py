"""Billing's web pages for a team (statements, invoices, the payment method, earnings and payouts)
and the Stripe webhook endpoint.

Money is need-to-know: a team's owners and its billing members see these pages; traders and viewers
get the 403 page that names the roles needed (the API agrees: only those roles hold `billing:read`).
Views are thin: selectors read for `request.team`, services write.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from marketplace.errors import NotFound
from marketplace.models import Role
from marketplace.web import paginate, team_required

from . import selectors, services, tasks
from .models import AccountKind
from .stripe_gateway import GatewayError, SignatureError, construct_event

MONEY_ROLES = (Role.OWNER, Role.BILLING)


def _team(request: HttpRequest) -> Any:
    return request.team  # type: ignore[attr-defined]


def _page_or_404(fn: Any, **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except NotFound as exc:
        raise Http404(exc.message) from exc


@team_required(roles=MONEY_ROLES)
def home(request: HttpRequest) -> HttpResponse:
    """What the team owes, its payment method and its invoices."""
    team = _team(request)
    return render(
        request,
        "billing/home.html",
        {
            "tab": "invoices",
            "owed": selectors.team_balances(team=team, kind=AccountKind.RECEIVABLE),
            "method": selectors.payment_method(team=team),
            "may_bid": selectors.team_may_bid(team),
            "period": settings.BILLING_PERIOD,
            "page": paginate(request, selectors.invoice_list(team=team)),
        },
    )


@team_required(roles=MONEY_ROLES)
def statements(request: HttpRequest) -> HttpResponse:
    """Every statement: one per lease and UTC day (and adjustments), newest first."""
    rows = selectors.statement_list(team=_team(request))
    return render(request, "billing/statements.html", {"tab": "statements", "page": paginate(request, rows)})


@team_required(roles=MONEY_ROLES)
def invoice_detail(request: HttpRequest, invoice_id: int) -> HttpResponse:
    """An invoice and its lines, each a statement that leads back to its lease."""
    invoice = _page_or_404(selectors.invoice_get, team=_team(request), invoice_id=invoice_id)
    return render(
        request,
        "billing/invoice.html",
        # Lines paginate: a month of daily statements over many leases runs to hundreds of lines.
        {
            "tab": "invoices",
            "invoice": invoice,
            "page": paginate(request, selectors.invoice_lines(invoice=invoice)),
        },
    )


@team_required(roles=MONEY_ROLES)
def statement_detail(request: HttpRequest, statement_id: int) -> HttpResponse:
    """One statement: the lease, the GPU-seconds leased and delivered, the price and the money."""
    statement = _page_or_404(selectors.statement_get, team=_team(request), statement_id=statement_id)
    return render(
        request,
        "billing/statement.html",
        {
            "tab": "statements",
            "s": statement,
            "price": selectors.price_cents_per_gpu_hour(
                statement.lease_payment_cents, statement.lease_gpu_seconds
            ),
        },
    )


@team_required(roles=MONEY_ROLES)
def lease_detail(request: HttpRequest, lease_id: int) -> HttpResponse:
    """A lease the team bought and every statement it produced."""
    lease, rows = _page_or_404(selectors.lease_statements, team=_team(request), lease_id=lease_id)
    whole = lease.gpus * int((lease.end - lease.start).total_seconds())
    return render(
        request,
        "billing/lease.html",
        {
            "tab": "statements",
            "lease": lease,
            "gpu_seconds": whole,
            "price": selectors.price_cents_per_gpu_hour(lease.payment_cents, whole),
            "page": paginate(request, rows),
        },
    )


@require_POST
@team_required(roles=MONEY_ROLES)
def payment_method_setup(request: HttpRequest) -> HttpResponse:
    """Send the person to Stripe Checkout (setup mode) to save a card; Stripe sends them back."""
    back = request.build_absolute_uri(reverse("billing-home"))
    try:
        url = services.payment_setup_start(
            team=_team(request), success_url=f"{back}?setup=done", cancel_url=f"{back}?setup=cancelled"
        )
    except GatewayError as exc:
        messages.error(request, f"Stripe did not answer ({exc}); nothing was changed. Try again shortly.")
        return HttpResponseRedirect(back)
    return HttpResponseRedirect(url)


@team_required(roles=MONEY_ROLES)
def earnings(request: HttpRequest) -> HttpResponse:
    """A seller's money: what it is owed, its payouts, its latest earnings and clawbacks, onboarding."""
    team = _team(request)
    if request.GET.get("onboarding") == "return":
        try:
            services.seller_account_refresh(team=team)
        except GatewayError:
            messages.warning(request, "Stripe did not answer; your onboarding state may be out of date.")
    return render(
        request,
        "billing/earnings.html",
        {
            "tab": "earnings",
            "owed": selectors.team_balances(team=team, kind=AccountKind.PAYABLE),
            "account": selectors.seller_account(team=team),
            "page": paginate(request, selectors.payout_list(team=team)),
            "lines": list(selectors.earnings_list(team=team)[:10]),
            "clawbacks": list(selectors.clawback_list(team=team)[:10]),
            "clawback_on": settings.BILLING_SELLER_CLAWBACK,
        },
    )


@team_required(roles=MONEY_ROLES)
def earnings_lines(request: HttpRequest) -> HttpResponse:
    """Every share of a statement the team earned as a seller, newest first."""
    rows = selectors.earnings_list(team=_team(request))
    return render(
        request, "billing/earnings_lines.html", {"tab": "earnings", "page": paginate(request, rows)}
    )


@require_POST
@team_required(roles=MONEY_ROLES)
def onboarding_start(request: HttpRequest) -> HttpResponse:
    """Send the person to Stripe's Connect onboarding for the team's Express account."""
    back = request.build_absolute_uri(reverse("billing-earnings"))
    try:
        url = services.seller_onboarding_link(
            team=_team(request),
            refresh_url=f"{back}?onboarding=refresh",
            return_url=f"{back}?onboarding=return",
        )
    except GatewayError as exc:
        messages.error(request, f"Stripe did not answer ({exc}); try again shortly.")
        return HttpResponseRedirect(back)
    return HttpResponseRedirect(url)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Answer 400 to anything unsigned, altered or stale; 200 once the event is stored."""
    try:
        event = construct_event(
            request.body,
            request.headers.get("Stripe-Signature", ""),
            secret=settings.STRIPE_WEBHOOK_SECRET,
            tolerance=settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS,
        )
    except SignatureError:
        return JsonResponse({"error": "invalid signature"}, status=400)
    with transaction.atomic():
        row, created = services.event_record(event=event)
        if created:
            transaction.on_commit(lambda: tasks.stripe_event_handle_task.delay(row.pk))
    return JsonResponse({"received": True, "duplicate": not created})
