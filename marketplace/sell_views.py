"""The Sell pages (/sell/): inventory with each host's agent health, agent enrolment, offers and fills.

Views are thin: writes go through the market's, the auction's and metering's services, reads
through selectors with the acting team, so another team's host or offer is a 404 here exactly as
in the API. Secrets (enrolment tokens) are handed over once through the session and popped on the
next page view, so reloading never shows them again.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.db.models import BigIntegerField, Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

# These pages join the market (inventory, offers) with clearing (fills) and metering (agents).
# This module is loaded by the URL conf only, never by the market's core, so no import cycle.
from auctions import services as auction_services
from auctions.models import LeaseSource, OfferFill
from metering import selectors as metering_selectors
from metering import services as metering_services
from metering.models import Anomaly, AnomalyStatus

from . import grid, selectors, services
from .errors import DomainError, InvalidInput, LimitExceeded, NotFound
from .models import Gpu, Interconnect, Offer, OfferStatus, Team
from .specs import OfferSpec
from .web import PAGE_SIZE, apply_errors, team_required

SELL_ROLES = tuple(str(r) for r in services.TRADING_ROLES)  # owners and traders sell
SESSION_TOKEN = "gridx_sell_enrolment_token"  # noqa: S105 (a session key, not a secret)


# --- small helpers -----------------------------------------------------------------------------


def pager(request: HttpRequest, rows: Any, *, param: str = "page", per_page: int = PAGE_SIZE) -> Page[Any]:
    """One page of `rows` from `?<param>=`, with `prev_url`/`next_url` keeping the other parameters
    (two lists on one page each page on their own parameter)."""
    page = Paginator(rows, per_page).get_page(request.GET.get(param))

    def url(number: int) -> str:
        query = request.GET.copy()
        query[param] = str(number)
        return "?" + query.urlencode()

    page.prev_url = url(page.previous_page_number()) if page.has_previous() else ""  # type: ignore[attr-defined]
    page.next_url = url(page.next_page_number()) if page.has_next() else ""  # type: ignore[attr-defined]
    return page


def parse_cents(text: str, *, allow_zero: bool = False, what: str = "The price") -> int:
    """Dollars typed by a person ("2.5", "$1,200.00") as integer cents; refuses fractions of a cent."""
    raw = (text or "").strip().replace(",", "").removeprefix("$").strip()
    try:
        amount = Decimal(raw)
    except InvalidOperation:
        raise forms.ValidationError(f"{what} is a number of dollars such as 2.50.") from None
    if not amount.is_finite():
        raise forms.ValidationError(f"{what} is a number of dollars such as 2.50.")
    if amount < 0 or (amount == 0 and not allow_zero):
        raise forms.ValidationError(f"{what} must be more than $0.00.")
    cents = amount * 100
    if cents != cents.to_integral_value():
        low = (cents // 1) / 100
        high = low + Decimal("0.01")
        raise forms.ValidationError(
            f"{what} must be whole cents: {raw} has a fraction of a cent; use {low:.2f} or {high:.2f}."
        )
    return int(cents)


class DollarsField(forms.CharField):
    """A dollar amount entered as a decimal, cleaned to integer cents."""

    def __init__(self, *, allow_zero: bool = False, what: str = "The price", **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}))
        super().__init__(**kwargs)
        self.allow_zero = allow_zero
        self.what = what

    def clean(self, value: Any) -> int | None:
        text = super().clean(value)
        if text in (None, ""):
            return None
        return parse_cents(text, allow_zero=self.allow_zero, what=self.what)


class UtcDateTimeInput(forms.DateTimeInput):
    """A datetime-local input whose value is read and shown in UTC."""

    input_type = "datetime-local"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            format="%Y-%m-%dT%H:%M", attrs={"step": str(int(settings.SLOT_MINUTES) * 60)}, **kwargs
        )


def utc_datetime_field(label: str, help_text: str, *, required: bool = True) -> forms.DateTimeField:
    return forms.DateTimeField(
        label=label,
        help_text=help_text,
        required=required,
        widget=UtcDateTimeInput(),
        error_messages={
            "required": f"Pick the {label.lower()}: a date and an hour (UTC).",
            "invalid": "Give a date and time such as 2026-12-01 10:00 (UTC).",
        },
    )


def _not_found(error: NotFound) -> Http404:
    return Http404(error.message)


def _refusal(request: HttpRequest, error: DomainError) -> None:
    messages.error(request, error.message[:1].upper() + error.message[1:])


# --- inventory ---------------------------------------------------------------------------------


class ClusterForm(forms.Form):
    name = forms.CharField(
        label="Cluster name",
        max_length=50,
        help_text="Short and unique in your team, e.g. “fra-1”; buyers see it as team/name.",
        error_messages={"required": "Give the cluster a name, e.g. fra-1."},
    )
    region = forms.CharField(
        label="Region",
        max_length=50,
        help_text="Where the machines are, e.g. eu-central or us-west.",
        error_messages={"required": "Say where the cluster is, e.g. eu-central."},
    )
    interconnect = forms.ChoiceField(
        label="Interconnect",
        choices=Interconnect.choices,
        help_text="How its GPUs talk to each other; buyers who need GPUs together look at this.",
    )


class HostForm(forms.Form):
    cluster = forms.TypedChoiceField(
        label="Cluster", coerce=int, help_text="The cluster this machine belongs to."
    )
    hostname = forms.CharField(
        label="Hostname",
        max_length=253,
        help_text="The machine's name as the agent will report it, e.g. gpu-node-07.",
        error_messages={"required": "Give the machine's hostname, e.g. gpu-node-07."},
    )

    def __init__(self, *args: Any, team: Team, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["cluster"].choices = [  # type: ignore[attr-defined]
            (c.pk, f"{c.name} ({c.region})") for c in selectors.cluster_list(team=team)
        ]


class GpuForm(forms.Form):
    gpu_model = forms.ChoiceField(label="GPU model", help_text="The model as in the market's catalogue.")
    uuid = forms.CharField(
        label="GPU UUID",
        max_length=96,
        help_text="As `nvidia-smi -L` prints it: GPU-… (or MIG-… for a MIG instance).",
        error_messages={"required": "Paste the GPU's UUID from `nvidia-smi -L`, e.g. GPU-8f3c…"},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["gpu_model"].choices = [  # type: ignore[attr-defined]
            (m.name, m.display_name) for m in selectors.gpu_model_list()
        ]


def _health_state(health: metering_selectors.AgentHealth, now: dt.datetime) -> dict[str, str]:
    state = health.state(now=now)
    words = {
        "reporting": ("healthy", "Reporting"),
        "stale": ("stale", "Reports stopped"),
        "silent": ("warn", "Enrolled, never reported"),
        "revoked": ("revoked", "Revoked"),
        "not_enrolled": ("muted", "Not enrolled"),
    }
    badge, text = words[state]
    return {"state": state, "badge": badge, "text": text}


def _hosts_with_health(team: Team, request: HttpRequest) -> Page[Any]:
    hosts = (
        selectors.host_list(team=team)
        .annotate(gpu_count=Count("gpus"))
        .order_by("cluster__name", "hostname", "pk")
    )
    page = pager(request, hosts)
    health = metering_selectors.host_agent_health(host_ids=[h.pk for h in page.object_list])
    now = timezone.now()
    for host in page.object_list:
        host.health = health[host.pk]
        host.health_state = _health_state(host.health, now)
    return page


def _overview(
    request: HttpRequest,
    *,
    cluster_form: ClusterForm | None = None,
    host_form: HostForm | None = None,
    status: int = 200,
) -> HttpResponse:
    team: Team = request.team  # type: ignore[attr-defined]
    clusters = (
        selectors.cluster_list(team=team)
        .annotate(host_count=Count("hosts", distinct=True), gpu_count=Count("hosts__gpus", distinct=True))
        .order_by("name", "pk")
    )
    gpu_models = list(
        Gpu.objects.filter(host__cluster__team=team)
        .values("gpu_model__name")
        .annotate(n=Count("id"))
        .order_by("gpu_model__name")
    )
    totals = Offer.objects.filter(team=team).aggregate(
        live=Count("id", filter=Q(status=OfferStatus.LIVE)), all=Count("id")
    )
    revenue = LeaseSource.objects.filter(offer__team=team).aggregate(total=Sum("revenue_cents"))["total"]
    return render(
        request,
        "sell/overview.html",
        {
            "clusters": pager(request, clusters, param="clusters_page"),
            "hosts": _hosts_with_health(team, request),
            "gpu_models": gpu_models,
            "gpu_total": sum(row["n"] for row in gpu_models),
            "offers_live": totals["live"],
            "offers_all": totals["all"],
            "revenue_cents": revenue or 0,
            "can_sell": request.role in SELL_ROLES,  # type: ignore[attr-defined]
            "cluster_form": cluster_form or ClusterForm(),
            "host_form": host_form or HostForm(team=team),
        },
        status=status,
    )


@team_required()
def overview(request: HttpRequest) -> HttpResponse:
    """Inventory: clusters, hosts with their agent's health, GPUs by model, offers and revenue."""
    return _overview(request)


@require_POST
@team_required(roles=SELL_ROLES)
def cluster_create(request: HttpRequest) -> HttpResponse:
    form = ClusterForm(request.POST)
    if form.is_valid():
        try:
            cluster = services.cluster_create(
                team=request.team,  # type: ignore[attr-defined]
                actor=request.user,  # type: ignore[arg-type]
                **form.cleaned_data,
            )
        except DomainError as error:
            apply_errors(form, error)
        else:
            messages.success(request, f"Cluster {cluster.name} created; register its hosts next.")
            return redirect("sell")
    return _overview(request, cluster_form=form, status=422)


@require_POST
@team_required(roles=SELL_ROLES)
def host_create(request: HttpRequest) -> HttpResponse:
    team: Team = request.team  # type: ignore[attr-defined]
    form = HostForm(request.POST, team=team)
    if form.is_valid():
        try:
            host = services.host_register(
                team=team,
                actor=request.user,  # type: ignore[arg-type]
                cluster_id=form.cleaned_data["cluster"],
                hostname=form.cleaned_data["hostname"],
            )
        except DomainError as error:
            apply_errors(form, error)
        else:
            messages.success(request, f"Host {host.hostname} registered; add its GPUs, then enrol its agent.")
            return redirect("sell-host", host_id=host.pk)
    return _overview(request, host_form=form, status=422)


def _host_page(
    request: HttpRequest, host_id: int, *, gpu_form: GpuForm | None = None, status: int = 200
) -> HttpResponse:
    team: Team = request.team  # type: ignore[attr-defined]
    try:
        host = selectors.host_get(team=team, host_id=host_id)
    except NotFound as error:
        raise _not_found(error) from None
    health = metering_selectors.host_agent_health(host_ids=[host.pk])[host.pk]
    anomalies = (
        Anomaly.objects.filter(Q(host=host) | Q(gpu__host=host), status=AnomalyStatus.OPEN)
        .select_related("gpu")
        .order_by("-created_at", "-id")[:20]
    )
    token = request.session.get(SESSION_TOKEN)
    if token and token.get("host") == host.pk:
        del request.session[SESSION_TOKEN]  # shown once: a reload does not show it again
    else:
        token = None
    gpus = selectors.gpu_list(team=team, host_id=host.pk).order_by("gpu_model__name", "uuid")
    return render(
        request,
        "sell/host.html",
        {
            "host": host,
            "health": health,
            "health_state": _health_state(health, timezone.now()),
            "anomalies": list(anomalies),
            "gpus": pager(request, gpus),
            "gpu_form": gpu_form or GpuForm(),
            "token": token,
            "server_url": request.build_absolute_uri("/").rstrip("/"),
            "can_sell": request.role in SELL_ROLES,  # type: ignore[attr-defined]
            "token_ttl_minutes": int(settings.METERING_TOKEN_TTL_S) // 60,
        },
        status=status,
    )


@team_required()
def host_detail(request: HttpRequest, host_id: int) -> HttpResponse:
    """One host: its agent (enrolled? last report, open anomalies), enrolment, its GPUs."""
    return _host_page(request, host_id)


@require_POST
@team_required(roles=SELL_ROLES)
def gpu_create(request: HttpRequest, host_id: int) -> HttpResponse:
    form = GpuForm(request.POST)
    if form.is_valid():
        try:
            gpu = services.gpu_register(
                team=request.team,  # type: ignore[attr-defined]
                actor=request.user,  # type: ignore[arg-type]
                host_id=host_id,
                gpu_model=form.cleaned_data["gpu_model"],
                uuid=form.cleaned_data["uuid"],
            )
        except InvalidInput as error:
            if any(e.field == "host" for e in error.errors):
                raise Http404("host not found") from None
            apply_errors(form, error)
        except DomainError as error:
            apply_errors(form, error)
        else:
            messages.success(request, f"GPU {gpu.uuid} added.")
            return redirect("sell-host", host_id=host_id)
    return _host_page(request, host_id, gpu_form=form, status=422)


def _issue_token(request: HttpRequest, host_id: int, *, rotate: bool) -> HttpResponse:
    team: Team = request.team  # type: ignore[attr-defined]
    issue = metering_services.key_rotate if rotate else metering_services.enrolment_token_create
    try:
        issued = issue(team=team, actor=request.user, host_id=host_id)  # type: ignore[arg-type]
    except NotFound as error:
        raise _not_found(error) from None
    except DomainError as error:
        if isinstance(error, InvalidInput) and error.errors[0].code == "no_gpus":
            messages.error(request, "This host has no GPUs yet: add its GPUs below, then enrol its agent.")
        else:
            _refusal(request, error)
        return redirect("sell-host", host_id=host_id)
    request.session[SESSION_TOKEN] = {
        "host": issued.host_id,
        "token": issued.token,
        "expires_at": issued.expires_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "rotate": rotate,
    }
    return redirect("sell-host", host_id=host_id)


@require_POST
@team_required(roles=SELL_ROLES)
def host_token(request: HttpRequest, host_id: int) -> HttpResponse:
    """A single-use enrolment token for the host's agent, shown once on the host's page."""
    return _issue_token(request, host_id, rotate=False)


@require_POST
@team_required(roles=SELL_ROLES)
def host_rotate(request: HttpRequest, host_id: int) -> HttpResponse:
    """A token to re-enrol the agent with a new key (`--force`); the old key works until then."""
    return _issue_token(request, host_id, rotate=True)


@require_POST
@team_required(roles=SELL_ROLES)
def host_revoke(request: HttpRequest, host_id: int) -> HttpResponse:
    """Revoke the host's agent keys and unused tokens, after the seller ticked the confirmation."""
    if request.POST.get("confirm") != "yes":
        messages.error(
            request, "Tick the box to confirm: the agent's reports are refused until it enrols again."
        )
        return redirect("sell-host", host_id=host_id)
    try:
        revoked = metering_services.host_revoke(
            team=request.team,  # type: ignore[attr-defined]
            actor=request.user,  # type: ignore[arg-type]
            host_id=host_id,
        )
    except NotFound as error:
        raise _not_found(error) from None
    messages.success(
        request,
        f"Revoked {revoked} agent key{'s' if revoked != 1 else ''}; enrol the host again to resume metering.",
    )
    return redirect("sell-host", host_id=host_id)


# --- offers ------------------------------------------------------------------------------------


class OfferForm(forms.Form):
    gpu_model = forms.ChoiceField(
        label="GPU model",
        help_text="Only models your clusters have GPUs of are listed.",
        error_messages={"invalid_choice": "Pick one of the GPU models listed: your team has no other."},
    )
    cluster = forms.TypedChoiceField(
        label="Cluster",
        coerce=int,
        help_text="Where the GPUs are.",
        error_messages={"invalid_choice": "Pick one of your clusters from the list."},
    )
    gpus = forms.IntegerField(
        label="GPUs",
        min_value=1,
        help_text="How many GPUs of that model you let go at once, at most what the cluster has free.",
        error_messages={
            "required": "Say how many GPUs you offer, e.g. 8.",
            "invalid": "GPUs are a whole number, e.g. 8.",
            "min_value": "Offer at least 1 GPU.",
        },
    )
    start = utc_datetime_field("Available from", "UTC, on the hour; the earliest is the next full hour.")
    end = utc_datetime_field(
        "Available until", "UTC, on the hour; not included (the window is [from, until))."
    )
    reserve = DollarsField(
        label="Reserve price ($ per GPU-hour)",
        what="The reserve price",
        help_text="The least you accept per GPU per hour, in dollars and cents, e.g. 1.80. "
        "You are paid the clearing price, which is never below it.",
        error_messages={"required": "Give the least you accept per GPU-hour, e.g. 1.80."},
    )

    def __init__(self, *args: Any, team: Team, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        owned = list(
            Gpu.objects.filter(host__cluster__team=team)
            .values("host__cluster_id", "host__cluster__name", "gpu_model__name")
            .annotate(n=Count("id"))
            .order_by("host__cluster__name", "gpu_model__name")
        )
        models = sorted({row["gpu_model__name"] for row in owned})
        self.fields["gpu_model"].choices = [(m, m) for m in models]  # type: ignore[attr-defined]
        clusters = {row["host__cluster_id"]: row["host__cluster__name"] for row in owned}
        self.fields["cluster"].choices = [  # type: ignore[attr-defined]
            (pk, name) for pk, name in sorted(clusters.items(), key=lambda kv: kv[1])
        ]
        self.owned = owned

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for name in ("start", "end"):
            if data.get(name) is not None:
                data[name] = data[name].astimezone(dt.UTC)
        return data


def offer_window_initial(now: dt.datetime) -> dict[str, dt.datetime]:
    """The next 24 hours on the slot grid: a sensible default window."""
    start = grid.slot_ceil(now)
    return {"start": start, "end": start + dt.timedelta(hours=24)}


OFFER_FIELDS = {"reserve_cents_per_gpu_hour": "reserve", "cluster_id": "cluster"}


@team_required()
def offer_new(request: HttpRequest) -> HttpResponse:
    """Post an offer: model, cluster, GPUs, a window picked in UTC on the hour grid, a reserve price."""
    team: Team = request.team  # type: ignore[attr-defined]
    can_sell = request.role in SELL_ROLES  # type: ignore[attr-defined]
    now = timezone.now()
    if request.method == "POST":
        if not can_sell:
            return render(
                request,
                "web/forbidden.html",
                {"role": request.role, "allowed": SELL_ROLES, "team": team},  # type: ignore[attr-defined]
                status=403,
            )
        form = OfferForm(request.POST, team=team)
        if form.is_valid():
            data = form.cleaned_data
            spec = OfferSpec(
                cluster_id=data["cluster"],
                gpu_model=data["gpu_model"],
                gpus=data["gpus"],
                start=data["start"],
                end=data["end"],
                reserve_cents_per_gpu_hour=data["reserve"],
            )
            try:
                placed = auction_services.offer_submit(team=team, actor=request.user, spec=spec)  # type: ignore[arg-type]
            except LimitExceeded as error:
                form.add_error(
                    "gpus" if error.field == "gpus" else None,
                    error.message[:1].upper() + error.message[1:] + ".",
                )
            except DomainError as error:
                apply_errors(form, error, fields=OFFER_FIELDS)
            else:
                offer = placed.order
                when = (
                    f"it takes part in round {placed.round_number} and every later round until it ends"
                    if placed.round_number
                    else "it takes part in the next round"
                )
                messages.success(request, f"Offer {offer.pk} posted: {when}.")
                return redirect("sell-offer", offer_id=offer.pk)
        status = 422
    else:
        form = OfferForm(initial=offer_window_initial(now), team=team)
        status = 200
    return render(
        request,
        "sell/offer_new.html",
        {
            "form": form,
            "can_sell": can_sell,
            "now": now,
            "earliest": grid.slot_ceil(now),
            "horizon_end": grid.horizon_end(now),
            "slot_minutes": int(settings.SLOT_MINUTES),
            "max_horizon_days": int(settings.MAX_HORIZON_DAYS),
        },
        status=status,
    )


def _offers_with_fills(offers: QuerySet[Offer]) -> QuerySet[Offer]:
    """Each offer with what it sold: GPU-hours and rounds (OfferFill), revenue (LeaseSource), in one query."""
    fills = OfferFill.objects.filter(offer=OuterRef("pk")).values("offer")
    sources = LeaseSource.objects.filter(offer=OuterRef("pk")).values("offer")
    zero = BigIntegerField()
    return offers.annotate(
        gpu_hours_sold=Coalesce(
            Subquery(fills.annotate(s=Sum("gpu_hours_sold")).values("s")), 0, output_field=zero
        ),
        rounds_filled=Coalesce(Subquery(fills.annotate(c=Count("id")).values("c")), 0, output_field=zero),
        revenue_cents=Coalesce(
            Subquery(sources.annotate(s=Sum("revenue_cents")).values("s")), 0, output_field=zero
        ),
    )


class OfferFilter(forms.Form):
    status = forms.ChoiceField(label="Status", required=False, choices=[("", "All"), *OfferStatus.choices])


@team_required()
def offer_list(request: HttpRequest) -> HttpResponse:
    """My offers, newest first, by status: what each sold and earned, and a withdraw button."""
    team: Team = request.team  # type: ignore[attr-defined]
    filter_form = OfferFilter(request.GET or None)
    status = filter_form.cleaned_data["status"] if filter_form.is_valid() else ""
    offers = _offers_with_fills(selectors.offer_list(team=team, status=status or None))
    return render(
        request,
        "sell/offers.html",
        {
            "offers": pager(request, offers),
            "filter_form": filter_form,
            "status": status,
            "can_sell": request.role in SELL_ROLES,  # type: ignore[attr-defined]
        },
    )


@team_required()
def offer_detail(request: HttpRequest, offer_id: int) -> HttpResponse:
    """One offer: its terms, its fills round by round and the leases it serves."""
    team: Team = request.team  # type: ignore[attr-defined]
    try:
        offer = selectors.offer_get(team=team, offer_id=offer_id)
    except NotFound as error:
        raise _not_found(error) from None
    offer = _offers_with_fills(Offer.objects.filter(pk=offer.pk).select_related("cluster", "gpu_model")).get()
    fills = OfferFill.objects.filter(offer=offer).select_related("round").order_by("-round__number")
    sources = (
        LeaseSource.objects.filter(offer=offer)
        .select_related("lease", "lease__round")
        .order_by("-lease__start", "-id")
    )
    return render(
        request,
        "sell/offer.html",
        {
            "offer": offer,
            "fills": pager(request, fills, param="fills_page"),
            "sources": pager(request, sources, param="leases_page"),
            "can_sell": request.role in SELL_ROLES,  # type: ignore[attr-defined]
        },
    )


@require_POST
@team_required(roles=SELL_ROLES)
def offer_withdraw(request: HttpRequest, offer_id: int) -> HttpResponse:
    """Withdraw a live offer; GPUs already leased from it stay leased."""
    try:
        offer = auction_services.offer_withdraw(
            team=request.team,  # type: ignore[attr-defined]
            actor=request.user,  # type: ignore[arg-type]
            offer_id=offer_id,
        )
    except NotFound as error:
        raise _not_found(error) from None
    except DomainError as error:
        _refusal(request, error)
    else:
        messages.success(
            request,
            f"Offer {offer.pk} withdrawn: it takes part in no further round; leases already won stay.",
        )
    target = request.POST.get("next", "")
    if target.startswith("/sell/") and "//" not in target:
        return redirect(target)
    return redirect(reverse("sell-offer", kwargs={"offer_id": offer_id}))
