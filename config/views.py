"""Site-wide error pages: the API answers in problem+json, the rest of the site in HTML."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.views import defaults


def _problem(request: HttpRequest, status: int, code: str, title: str, detail: str) -> HttpResponse:
    body = {
        "type": f"https://gridx.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "errors": [],
        "instance": request.path,
    }
    return HttpResponse(json.dumps(body), status=status, content_type="application/problem+json")


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        return _problem(request, 404, "not_found", "Not found", f"no API resource at {request.path}")
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return _problem(
            request,
            500,
            "server_error",
            "Server error",
            "an unexpected error; it was logged and we will look",
        )
    return defaults.server_error(request)
