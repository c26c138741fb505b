"""HTML views of the market's core: the public market pages, accounts and teams."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from . import selectors, services
from .errors import DomainError, PermissionDenied
from .models import Role
from .web import SESSION_TEAM, apply_errors, paginate, team_required, team_switch

# --- the public market ------------------------------------------------------------------------

ROUNDS_PER_PAGE = 10


def usd(cents: int | None) -> str:
    """Integer cents as dollars, e.g. 123456 -> "$1,234.56" (no floats)."""
    if cents is None:
        return "–"
    whole, rest = divmod(abs(int(cents)), 100)
    return f"{'−' if cents < 0 else ''}${whole:,}.{rest:02d}"


def percent(fraction: float | None) -> str:
    return "–" if fraction is None else f"{fraction * 100:.2f} %"


def price_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**r, "mean": usd(r["mean_cents"]), "min": usd(r["min_cents"]), "max": usd(r["max_cents"])}
        for r in rows
    ]


def round_rows(rounds_: Any) -> list[dict[str, Any]]:
    """Past rounds with their reports' public figures, formatted for people."""
    from auctions.selectors import report_of

    rows = []
    for r in rounds_:
        report = report_of(r)
        rows.append(
            {
                "round": r,
                "report": report,
                "welfare": usd(report.get("welfare_cents")),
                "gap": percent(report.get("gap")),
            }
        )
    return rows


def _chart_filters(request: HttpRequest, pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The price chart's filters from the query string; unknown values fall back to "all"."""
    from auctions.selectors import PRICE_RANGES

    model = request.GET.get("model", "")
    cluster = request.GET.get("cluster", "")
    range_key = request.GET.get("range", "24h")
    return {
        "model": model if model in {m for m, _ in pairs} else "",
        "cluster": cluster if cluster in {c for _, c in pairs} else "",
        "range": range_key if range_key in PRICE_RANGES else "24h",
    }


def market_page(request: HttpRequest) -> HttpResponse:
    """The market at a glance: the open round, last prices, charts and past rounds (no bid shown)."""
    # Imported here: marketplace must not depend on auctions at import time (auctions → marketplace).
    from auctions import selectors as rounds

    now = timezone.now()
    last = rounds.round_last_cleared()
    pairs = rounds.price_pairs()
    filters = _chart_filters(request, pairs)
    page = paginate(request, rounds.round_list_reports(), per_page=ROUNDS_PER_PAGE)
    return render(
        request,
        "market/index.html",
        {
            "now": now,
            "summary": selectors.market_summary(),
            "open_round": rounds.round_open_get(),
            "last_round": last,
            "last_report": rounds.report_of(last) if last else {},
            "last_prices": price_rows(rounds.round_prices_by_pair(round_=last)) if last else [],
            "models": sorted({m for m, _ in pairs}),
            "clusters": sorted({c for _, c in pairs}),
            "filters": filters,
            "ranges": [("24h", "24 hours"), ("7d", "7 days"), ("30d", "30 days")],
            "price_chart": rounds.price_chart(
                now=now,
                range_key=filters["range"],
                gpu_model=filters["model"],
                cluster_code=filters["cluster"],
            ),
            "gpu_hours": rounds.gpu_hours_per_round(limit=30),
            "supply": rounds.supply_by_day(now=now, days=7),
            "page": page,
            "round_rows": round_rows(page),
        },
    )


@require_GET
def market_prices_json(request: HttpRequest) -> JsonResponse:
    """The price chart's series for the chosen model, cluster and range (the chart's filters fetch this)."""
    from auctions import selectors as rounds

    filters = _chart_filters(request, rounds.price_pairs())
    return JsonResponse(
        rounds.price_chart(
            now=timezone.now(),
            range_key=filters["range"],
            gpu_model=filters["model"],
            cluster_code=filters["cluster"],
        )
    )


def _public_round(number: int) -> Any:
    from auctions import selectors as rounds

    round_ = rounds.round_list_reports().filter(number=number).first()
    if round_ is None:
        raise Http404(f"Round {number} has not closed yet, or does not exist.")
    return round_


def round_page(request: HttpRequest, number: int) -> HttpResponse:
    """One round's clearing report and how anyone can check it."""
    from auctions import selectors as rounds

    round_ = _public_round(number)
    row = round_rows([round_])[0]
    return render(
        request,
        "market/round.html",
        {
            "round": round_,
            "report": row["report"],
            "row": row,
            "bound": usd(row["report"].get("bound_cents")),
            "prices": price_rows(rounds.round_prices_by_pair(round_=round_)) if row["report"] else [],
            "previous_number": rounds.round_number_of_report(
                report_sha256=row["report"].get("previous_report_sha256", "")
            ),
        },
    )


def round_report_json(request: HttpRequest, number: int) -> HttpResponse:
    """The report's exact published bytes: their SHA-256 is the round's report hash."""
    round_ = _public_round(number)
    if not round_.report:
        raise Http404(f"Round {number} has no report yet.")
    response = HttpResponse(round_.report.encode(), content_type="application/json")
    response["Content-Disposition"] = f'inline; filename="report-{number}.json"'
    return response


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability, for load balancers and the demo supervisor."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True, "database": connection.vendor})


# --- accounts ---------------------------------------------------------------------------------


class SignupForm(forms.Form):
    email = forms.EmailField(
        label="Email address",
        help_text="You log in with it, and teams invite you by it.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    password = forms.CharField(
        label="Password",
        strip=False,
        help_text="At least 8 characters; not only digits, and not a common password.",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )


def _safe_next(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def signup_page(request: HttpRequest) -> HttpResponse:
    """Create an account and sign in; then create a team (or follow the invitation link in `next`)."""
    if request.user.is_authenticated:
        return redirect(_safe_next(request, "/"))
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.account_create(
                email=form.cleaned_data["email"], password=form.cleaned_data["password"]
            )
        except DomainError as error:
            apply_errors(form, error)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, f"Welcome to Gridx, {user.email}.")
            return redirect(_safe_next(request, "/team/new/"))
    return render(request, "account/signup.html", {"form": form, "next": _safe_next(request, "")})


# --- teams ------------------------------------------------------------------------------------


class TeamForm(forms.Form):
    name = forms.CharField(
        label="Team name",
        max_length=100,
        help_text="How other teams and your invoices name you, e.g. “Orbit Labs”; at most 100 characters.",
    )


@login_required
def team_create_page(request: HttpRequest) -> HttpResponse:
    """Create a team; its creator becomes its owner and it becomes the acting team."""
    form = TeamForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            team = services.team_create(name=form.cleaned_data["name"], owner=request.user)  # type: ignore[arg-type]
        except DomainError as error:
            apply_errors(form, error)
        else:
            request.session[SESSION_TEAM] = team.pk
            messages.success(request, f"Team {team.name} created; you are its owner.")
            return redirect("team")
    return render(request, "team/create.html", {"form": form})


ROLE_HELP = {
    Role.OWNER: "manages members, keys and everything else",
    Role.TRADER: "places bids and offers, manages inventory",
    Role.VIEWER: "sees everything, changes nothing",
    Role.BILLING: "sees and pays invoices",
}


class InviteForm(forms.Form):
    email = forms.EmailField(
        label="Email address",
        help_text="The person signs up or logs in with this address, then opens the link.",
    )
    role = forms.ChoiceField(
        label="Role",
        choices=[(r.value, f"{r.label} — {ROLE_HELP[r]}") for r in Role],
        initial=Role.TRADER,
    )


def _team_context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    team = request.team  # type: ignore[attr-defined]
    is_owner = request.role == Role.OWNER  # type: ignore[attr-defined]
    context: dict[str, Any] = {
        "team": team,
        "role": request.role,  # type: ignore[attr-defined]
        "is_owner": is_owner,
        "page": paginate(request, selectors.member_list(team=team)),
        "roles": [(r.value, r.label) for r in Role],
        "invitations": (
            list(selectors.invitation_list_pending(team=team, now=timezone.now())[:50]) if is_owner else []
        ),
        "invite_form": InviteForm(),
    }
    context.update(extra)
    return context


@team_required()
def team_page(request: HttpRequest) -> HttpResponse:
    """The acting team's members and roles; owners invite, change roles and remove."""
    return render(request, "team/detail.html", _team_context(request))


@require_POST
@team_required(roles=[Role.OWNER])
def team_invite(request: HttpRequest) -> HttpResponse:
    """Create an invitation and show its link once (no email is sent)."""
    form = InviteForm(request.POST)
    link = None
    invitation = None
    if form.is_valid():
        try:
            invitation, token = services.invitation_create(
                team=request.team,  # type: ignore[attr-defined]
                actor=request.user,  # type: ignore[arg-type]
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
            )
        except DomainError as error:
            apply_errors(form, error)
        else:
            link = request.build_absolute_uri(f"/team/invite/{token}/")
            form = InviteForm()
    status = 200 if link or not form.errors else 422
    return render(
        request,
        "team/detail.html",
        _team_context(request, invite_form=form, new_link=link, new_invitation=invitation),
        status=status,
    )


def _after(request: HttpRequest, done: str) -> HttpResponse:
    messages.success(request, done)
    return redirect("team")


@require_POST
@team_required(roles=[Role.OWNER])
def team_invitation_revoke(request: HttpRequest, invitation_id: int) -> HttpResponse:
    try:
        invitation = services.invitation_revoke(
            team=request.team,  # type: ignore[attr-defined]
            actor=request.user,  # type: ignore[arg-type]
            invitation_id=invitation_id,
        )
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("team")
    return _after(request, f"The invitation of {invitation.email} no longer works.")


@require_POST
@team_required(roles=[Role.OWNER])
def team_member_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    try:
        membership = services.member_role_change(
            team=request.team,  # type: ignore[attr-defined]
            actor=request.user,  # type: ignore[arg-type]
            membership_id=membership_id,
            role=request.POST.get("role", ""),
        )
    except DomainError as error:
        messages.error(request, _sentence(error.message))
        return redirect("team")
    return _after(request, f"{membership.user.email} is now {membership.role}.")


@require_POST
@team_required()
def team_member_remove(request: HttpRequest, membership_id: int) -> HttpResponse:
    """Owners remove members; anyone may remove themselves (leave the team)."""
    team = request.team  # type: ignore[attr-defined]
    try:
        membership = services.member_remove(
            team=team,
            actor=request.user,  # type: ignore[arg-type]
            membership_id=membership_id,
        )
    except DomainError as error:
        messages.error(request, _sentence(error.message))
        return redirect("team")
    if membership.user_id == request.user.pk:
        request.session.pop(SESSION_TEAM, None)
        messages.success(request, f"You left {team.name}.")
        return redirect("/")
    return _after(request, f"{membership.user.email} was removed from {team.name}.")


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def invitation_page(request: HttpRequest, token: str) -> HttpResponse:
    """An invitation link: say what it is; signed in as the invited email, join with one click."""
    invitation = selectors.invitation_by_token(token=token)
    problem, status = None, 200
    if invitation is None:
        problem = "This invitation link is not valid. Check that you copied all of it, or ask for a new one."
        status = 404
    elif invitation.accepted_at is not None:
        problem, status = "This invitation link has been used already; each link works once.", 410
    elif invitation.revoked_at is not None:
        problem, status = "This invitation was withdrawn by the team's owner.", 410
    elif invitation.expires_at <= timezone.now():
        problem = (
            f"This invitation expired on {invitation.expires_at:%Y-%m-%d %H:%M} UTC. "
            "Ask an owner of the team for a new link."
        )
        status = 410
    if request.method == "POST" and problem is None and request.user.is_authenticated:
        try:
            membership = services.invitation_accept(token=token, user=request.user)
        except DomainError as error:
            problem = _sentence(error.message)
            status = 403 if isinstance(error, PermissionDenied) else 409
        else:
            request.session[SESSION_TEAM] = membership.team_id
            messages.success(
                request, f"You joined {membership.team.name} as {membership.role}; you now act for it."
            )
            return redirect("team")
    return render(
        request,
        "team/invitation.html",
        {"invitation": invitation, "problem": problem, "path": request.path},
        status=status,
    )


@require_POST
@login_required
def team_switch_view(request: HttpRequest) -> HttpResponse:
    """Act for another of the user's teams from now on."""
    try:
        team_id = int(request.POST.get("team", ""))
    except ValueError:
        team_id = 0
    team = team_switch(request, team_id)
    if team is None:
        messages.error(request, "You are not a member of that team.")
    else:
        messages.info(request, f"You now act for {team.name}.")
    return redirect(_safe_next(request, request.headers.get("Referer") or "/"))
