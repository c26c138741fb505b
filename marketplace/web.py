"""Shared plumbing of the HTML pages: the acting team in the session, role checks, form errors.

Every signed-in page acts for one team, kept in the session (`SESSION_TEAM`) and switched from the
header. Pages that need a team use `team_required(...)`, which sets `request.team` and
`request.role`; selectors are then called with that team, exactly like the API does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django import forms
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from .errors import DomainError, InvalidInput
from .models import Membership, Team

SESSION_TEAM = "gridx_team_id"
PAGE_SIZE = 25

View = TypeVar("View", bound=Callable[..., HttpResponse])


def _signed_in(request: HttpRequest) -> bool:
    # DRF's views (the API docs) may render templates with `request.user` None.
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated)


def memberships(request: HttpRequest) -> list[Membership]:
    """The signed-in user's memberships, teams by name; cached on the request (one query)."""
    cached = getattr(request, "_gridx_memberships", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    found: list[Membership] = []
    user_id = request.user.pk if _signed_in(request) else None
    if user_id is not None:
        found = list(Membership.objects.filter(user_id=user_id).select_related("team").order_by("team__name"))
    request._gridx_memberships = found  # type: ignore[attr-defined]
    return found


def current_membership(request: HttpRequest) -> Membership | None:
    """The membership the session acts for: the chosen team while the user belongs to it, else the first."""
    found = memberships(request)
    if not found:
        return None
    chosen = request.session.get(SESSION_TEAM)
    for membership in found:
        if membership.team_id == chosen:
            return membership
    request.session[SESSION_TEAM] = found[0].team_id
    return found[0]


def team_switch(request: HttpRequest, team_id: int) -> Team | None:
    """Make `team_id` the acting team if the user belongs to it; returns the team or None."""
    for membership in memberships(request):
        if membership.team_id == team_id:
            request.session[SESSION_TEAM] = team_id
            return membership.team
    return None


def team_required(roles: Iterable[str] | None = None) -> Callable[[View], View]:
    """Sign-in and a team for the page; with `roles`, the acting role must be one of them.

    Anonymous users go to the login page and come back; users without a team go to team creation;
    a role that may not use the page gets a 403 page that says which role it needs.
    """
    allowed = tuple(str(r) for r in roles) if roles is not None else None

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            membership = current_membership(request)
            if membership is None:
                return redirect("team-create")
            if allowed is not None and membership.role not in allowed:
                return render(
                    request,
                    "web/forbidden.html",
                    {"role": membership.role, "allowed": allowed, "team": membership.team},
                    status=403,
                )
            request.team = membership.team  # type: ignore[attr-defined]
            request.role = membership.role  # type: ignore[attr-defined]
            return view(request, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def apply_errors(form: forms.Form, error: DomainError, *, fields: dict[str, str] | None = None) -> None:
    """Show a service's refusal on the form: each FieldError next to its field, the rest on top.

    `fields` maps a service's field path (`alternatives[1].gpus`) to a form field name when they differ.
    """
    if isinstance(error, InvalidInput):
        for item in error.errors:
            name = (fields or {}).get(item.field, item.field)
            form.add_error(name if name in form.fields else None, item.message)
    else:
        form.add_error(None, error.message)


def dollars(cents: int | float | None) -> str:
    """Integer cents as dollars with two decimals and thousands separators: 123456 -> "$1,234.56"."""
    if cents is None:
        return "–"
    sign = "-" if cents < 0 else ""
    whole, rest = divmod(abs(int(round(cents))), 100)
    return f"{sign}${whole:,}.{rest:02d}"


def paginate(request: HttpRequest, rows: Any, *, per_page: int = PAGE_SIZE) -> Page[Any]:
    """One page of `rows` from `?page=`; a bad page number shows the nearest valid page."""
    return Paginator(rows, per_page).get_page(request.GET.get("page"))


def nav(request: HttpRequest) -> dict[str, object]:
    """Context for the header: the acting membership and the teams to switch to (no query when anonymous)."""
    if not _signed_in(request):
        return {"nav_membership": None, "nav_memberships": []}
    return {"nav_membership": current_membership(request), "nav_memberships": memberships(request)}
