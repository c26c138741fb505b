"""HTML views of the market's core."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from . import services
from .errors import DomainError
from .selectors import market_summary
from .web import SESSION_TEAM, apply_errors, team_switch


def status_page(request: HttpRequest) -> HttpResponse:
    """A plain public page showing the market in aggregate (bids stay sealed) and recent rounds."""
    # Imported here: marketplace must not depend on auctions at import time (auctions → marketplace).
    from auctions.selectors import public_round_rows, round_open_get

    return render(
        request,
        "marketplace/status.html",
        {"summary": market_summary(), "open_round": round_open_get(), "rounds": public_round_rows(limit=10)},
    )


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability, for load balancers and the demo supervisor."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True, "database": connection.vendor})


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
            return redirect("/")
    return render(request, "team/create.html", {"form": form})


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
    return redirect(request.POST.get("next") or request.headers.get("Referer") or "/")
