"""The Developers pages (/developers/): API keys with their kill switch, webhook endpoints and deliveries.

Secrets (a key, an endpoint's signing secret) are returned by the services once; the view keeps
them in the session for exactly one page view, so a reload never shows them again.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import Count, Prefetch, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

# Loaded by the URL conf only: the kill switch lives in auctions (it must see the rounds).
from auctions import services as auction_services

from . import selectors, services
from .errors import DomainError, NotFound
from .models import BidStatus, DeliveryStatus, Role, Scope, Team, WebhookAttempt, WebhookEvent
from .sell_views import DollarsField, pager, utc_datetime_field
from .web import apply_errors, team_required

KEY_ROLES = (str(Role.OWNER),)  # as the API: only owners create and revoke keys
KILL_ROLES = tuple(str(r) for r in services.TRADING_ROLES)
WEBHOOK_ROLES = tuple(str(r) for r in services.WEBHOOK_ROLES)
SESSION_KEY_SECRET = "gridx_new_api_key"  # noqa: S105 (a session key, not a secret)
SESSION_WEBHOOK_SECRET = "gridx_new_webhook_secret"  # noqa: S105


def _pop_once(request: HttpRequest, name: str) -> Any:
    """A secret stored by the previous request, shown on this page view only."""
    return request.session.pop(name, None)


def _message(error: DomainError) -> str:
    return error.message[:1].upper() + error.message[1:]


# --- API keys ----------------------------------------------------------------------------------


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        label="Key name",
        max_length=100,
        help_text="What uses it, e.g. “pricing bot (prod)”; shown in the list, never secret.",
        error_messages={"required": "Name the key after what will use it, e.g. pricing bot."},
    )
    scopes = forms.MultipleChoiceField(
        label="Scopes",
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="What the key may do; give it no more than it needs.",
        error_messages={"required": "Tick at least one scope: a key without scopes can do nothing."},
    )
    expires_at = utc_datetime_field(
        "Expires at", "Optional, UTC. After this the key stops working; empty means never.", required=False
    )
    exposure_cap = DollarsField(
        label="Exposure cap ($)",
        required=False,
        allow_zero=True,
        what="The exposure cap",
        help_text="Optional. The most this key's open bids may commit in total (limit × GPUs × hours), "
        "in dollars; bids beyond it are refused. Empty means only the team's limits apply.",
    )


def _keys_page(request: HttpRequest, *, form: ApiKeyForm | None = None, status: int = 200) -> HttpResponse:
    team: Team = request.team  # type: ignore[attr-defined]
    keys = (
        selectors.api_key_list(team=team)
        .select_related("created_by")
        .annotate(open_bids=Count("bids", filter=Q(bids__status=BidStatus.OPEN)))
        .order_by("-created_at", "-id")
    )
    page = pager(request, keys)
    now = timezone.now()
    for key in page.object_list:
        if key.killed_at:
            key.state, key.state_text = "killed", "Killed"
        elif key.revoked_at:
            key.state, key.state_text = "revoked", "Revoked"
        elif key.expires_at and key.expires_at <= now:
            key.state, key.state_text = "expired", "Expired"
        else:
            key.state, key.state_text = "active", "Active"
    role = request.role  # type: ignore[attr-defined]
    return render(
        request,
        "developers/keys.html",
        {
            "keys": page,
            "form": form or ApiKeyForm(),
            "new_key": _pop_once(request, SESSION_KEY_SECRET),
            "can_manage": role in KEY_ROLES,
            "can_kill": role in KILL_ROLES,
        },
        status=status,
    )


@team_required()
def keys(request: HttpRequest) -> HttpResponse:
    """API keys: scopes, expiry, last use, state; create (owners), revoke (owners), kill switch."""
    return _keys_page(request)


@require_POST
@team_required(roles=KEY_ROLES)
def key_create(request: HttpRequest) -> HttpResponse:
    form = ApiKeyForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            key, secret = services.api_key_create(
                team=request.team,  # type: ignore[attr-defined]
                actor=request.user,  # type: ignore[arg-type]
                name=data["name"],
                scopes=data["scopes"],
                expires_at=data["expires_at"],
                exposure_cap_cents=data["exposure_cap"],
            )
        except DomainError as error:
            apply_errors(form, error, fields={"exposure_cap_cents": "exposure_cap"})
        else:
            request.session[SESSION_KEY_SECRET] = {"id": key.pk, "name": key.name, "secret": secret}
            return redirect("developers")
    return _keys_page(request, form=form, status=422)


@require_POST
@team_required(roles=KEY_ROLES)
def key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    try:
        key = services.api_key_revoke(
            team=request.team,  # type: ignore[attr-defined]
            actor=request.user,  # type: ignore[arg-type]
            key_id=key_id,
        )
    except NotFound as error:
        raise Http404(error.message) from None
    messages.success(
        request, f"Key {key.name} ({key.prefix}) revoked: requests with it are refused from now on."
    )
    return redirect("developers")


@team_required(roles=KILL_ROLES)
def key_kill(request: HttpRequest, key_id: int) -> HttpResponse:
    """The kill switch: a confirmation page (GET), then revoke the key and cancel its open bids (POST)."""
    team: Team = request.team  # type: ignore[attr-defined]
    try:
        key = selectors.api_key_get(team=team, key_id=key_id)
    except NotFound as error:
        raise Http404(error.message) from None
    if request.method == "POST":
        killed = auction_services.api_key_kill(team=team, actor=request.user, key_id=key.pk)  # type: ignore[arg-type]
        text = f"Key {key.name} killed: it is revoked and {len(killed.cancelled)} open bid"
        text += " was" if len(killed.cancelled) == 1 else "s were"
        text += " cancelled."
        if killed.held:
            text += (
                f" {len(killed.held)} bid{'s' if len(killed.held) != 1 else ''} in a round being cleared "
                "stand until its outcome."
            )
        messages.warning(request, text)
        return redirect("developers")
    open_bids = key.bids.filter(status=BidStatus.OPEN).count()
    return render(request, "developers/kill.html", {"key": key, "open_bids": open_bids})


# --- webhooks ----------------------------------------------------------------------------------


class WebhookForm(forms.Form):
    url = forms.URLField(
        label="Endpoint URL",
        max_length=500,
        assume_scheme="https",
        help_text="Where Gridx POSTs events, e.g. https://bot.example/hooks/gridx (https).",
        error_messages={
            "required": "Give the URL that should receive events, e.g. https://bot.example/hooks.",
            "invalid": "Give a full URL such as https://bot.example/hooks.",
        },
    )
    events = forms.MultipleChoiceField(
        label="Events",
        choices=WebhookEvent.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="Which events to send to this URL.",
        error_messages={"required": "Tick at least one event to send."},
    )
    description = forms.CharField(
        label="Description", max_length=200, required=False, help_text="Optional: a note for your team."
    )


def _webhooks_page(
    request: HttpRequest, *, form: WebhookForm | None = None, status: int = 200
) -> HttpResponse:
    team: Team = request.team  # type: ignore[attr-defined]
    endpoints = (
        selectors.webhook_endpoint_list(team=team)
        .annotate(
            delivery_count=Count("deliveries"),
            failed_count=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.FAILED)),
            pending_count=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.PENDING)),
        )
        .order_by("-created_at", "-id")
    )
    return render(
        request,
        "developers/webhooks.html",
        {
            "endpoints": pager(request, endpoints),
            "form": form or WebhookForm(),
            "new_secret": _pop_once(request, SESSION_WEBHOOK_SECRET),
            "can_manage": request.role in WEBHOOK_ROLES,  # type: ignore[attr-defined]
        },
        status=status,
    )


@team_required()
def webhooks(request: HttpRequest) -> HttpResponse:
    """Webhook endpoints with their delivery counts; create one (its secret shown once), disable."""
    return _webhooks_page(request)


@require_POST
@team_required(roles=WEBHOOK_ROLES)
def webhook_create(request: HttpRequest) -> HttpResponse:
    form = WebhookForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            endpoint, secret = services.webhook_endpoint_create(
                team=request.team,  # type: ignore[attr-defined]
                actor=request.user,  # type: ignore[arg-type]
                url=data["url"],
                events=data["events"],
                description=data["description"],
            )
        except DomainError as error:
            apply_errors(form, error)
        else:
            request.session[SESSION_WEBHOOK_SECRET] = {
                "id": endpoint.pk,
                "url": endpoint.url,
                "secret": secret,
            }
            return redirect("developers-webhooks")
    return _webhooks_page(request, form=form, status=422)


@require_POST
@team_required(roles=WEBHOOK_ROLES)
def webhook_disable(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    try:
        endpoint = services.webhook_endpoint_disable(
            team=request.team,  # type: ignore[attr-defined]
            actor=request.user,  # type: ignore[arg-type]
            endpoint_id=endpoint_id,
        )
    except NotFound as error:
        raise Http404(error.message) from None
    messages.success(request, f"Endpoint {endpoint.url} disabled: no more events are sent to it.")
    return redirect("developers-webhooks")


class DeliveryFilter(forms.Form):
    status = forms.ChoiceField(label="Status", required=False, choices=[("", "All"), *DeliveryStatus.choices])


@team_required()
def webhook_detail(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    """One endpoint's delivery log, newest first: status, every attempt's response code, replay."""
    team: Team = request.team  # type: ignore[attr-defined]
    try:
        endpoint = selectors.webhook_endpoint_get(team=team, endpoint_id=endpoint_id)
    except NotFound as error:
        raise Http404(error.message) from None
    filter_form = DeliveryFilter(request.GET or None)
    status = filter_form.cleaned_data["status"] if filter_form.is_valid() else ""
    deliveries = (
        selectors.webhook_delivery_list(team=team, endpoint_id=endpoint.pk)
        .prefetch_related(Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("number")))
        .order_by("-created_at", "-id")
    )
    if status:
        deliveries = deliveries.filter(status=status)
    return render(
        request,
        "developers/webhook.html",
        {
            "endpoint": endpoint,
            "deliveries": pager(request, deliveries),
            "filter_form": filter_form,
            "status": status,
            "can_manage": request.role in WEBHOOK_ROLES,  # type: ignore[attr-defined]
        },
    )


@require_POST
@team_required(roles=WEBHOOK_ROLES)
def delivery_replay(request: HttpRequest, delivery_id: int) -> HttpResponse:
    team: Team = request.team  # type: ignore[attr-defined]
    try:
        original = selectors.webhook_delivery_get(team=team, delivery_id=delivery_id)
        replay = services.webhook_delivery_replay(team=team, actor=request.user, delivery_id=delivery_id)  # type: ignore[arg-type]
    except NotFound as error:
        raise Http404(error.message) from None
    except DomainError as error:
        messages.error(request, _message(error))
    else:
        messages.success(
            request, f"Delivery {original.pk} ({original.event}) queued again as delivery {replay.pk}."
        )
    return redirect("developers-webhook", endpoint_id=original.endpoint_id)
