"""HTML views of the market's core."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from .selectors import market_summary


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
