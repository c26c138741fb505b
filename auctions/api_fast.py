"""`POST /api/v1/bids` for a bot's well-formed request, without DRF's request cycle.

`FastBidMiddleware` (in MIDDLEWARE right after SecurityMiddleware) hands such requests to
`place_bid`; whatever `place_bid` declines goes on through the stack to `BidListApi`.

Bots place single bids at a high rate, and DRF's cycle (request wrapping, authentication classes,
permission and throttle classes, negotiation, parser, the ORM's compile of the key lookup) cost
more CPU than the bid itself. A request takes this path only when it is plainly well-formed:

- `Authorization: Bearer gx_…` naming a live key with the `bids:write` scope;
- a JSON body (`Content-Type: application/json`, UTF-8) that `plain_spec` reads, no query string,
  an `Accept` that JSON satisfies, and a valid `Idempotency-Key` if any.

Everything else (a session, a bad or revoked key, a missing scope, a malformed body, another
media type) goes to `BidListApi` unchanged, so every refusal is explained exactly as before.
From there on both paths share the same code: the rate limit (`rate_limit_wait`), the
idempotency record (`idempotent_call`), the service (`bid_submit`), the response body
(`placed`), the error bodies (`exception_handler`) and DRF's own JSON renderer, so a client
cannot tell which path answered (`tests/api/test_bid_fast_view.py` compares them).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from marketplace.api_auth import bearer_key, forget_key, key_rate_limit, rate_limit_wait
from marketplace.api_support import exception_handler, idempotent_call
from marketplace.api_support import idempotency_key as read_idempotency_key
from marketplace.errors import DomainError, InvalidInput, KeyRefused
from marketplace.models import Bid, Scope

from . import services
from .api import BidListApi, placed, plain_spec

_RENDERER = JSONRenderer()


def _allowed_methods() -> str:
    view = BidListApi()
    if hasattr(view, "get") and not hasattr(view, "head"):
        view.head = view.get  # type: ignore[attr-defined]  # as Django's View.setup does
    return ", ".join(view.allowed_methods)


_ALLOW = _allowed_methods()


class FastBidMiddleware:
    """Answers `POST /api/v1/bids` from a bot with `place_bid` before the rest of the middleware
    stack and the URL resolver run; leaves every other request, and every bid `place_bid` declines,
    to the stack and `BidListApi`. Placed right after SecurityMiddleware (its headers apply to
    these answers too); the headers the skipped middleware would add to such an answer
    (X-Frame-Options, Content-Length) are added here, so both paths answer alike. The session,
    CSRF, authentication and messages middleware add nothing to a bearer-key request, and the
    view is CSRF-exempt like every API view.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.path = ""

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST":
            if not self.path:
                self.path = reverse("api-bids")
            if request.path == self.path and (response := place_bid(request)) is not None:
                response.headers.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
                response.headers["Content-Length"] = str(len(response.content))
                return response
        return self.get_response(request)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # DRF's strict JSON refuses NaN and Infinity too


def _json_body(request: HttpRequest) -> Any:
    """The parsed body as DRF's JSONParser would read it, or None to leave the request to DRF."""
    if request.content_type != "application/json" or request.GET:
        return None
    if (request.content_params or {}).get("charset", "utf-8").lower() not in {"utf-8", "utf8"}:
        return None
    accept = request.META.get("HTTP_ACCEPT", "")
    if accept and not any(
        media.split(";", 1)[0].strip() in {"application/json", "application/*", "*/*"}
        for media in accept.split(",")
    ):
        return None
    try:
        return json.loads(request.body.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


def _render(response: Response) -> Response:
    """What DRF's `finalize_response` does for this view: its JSON renderer and its Allow header."""
    response.accepted_renderer = _RENDERER
    response.accepted_media_type = _RENDERER.media_type
    response.renderer_context = {}  # type: ignore[attr-defined]
    response["Allow"] = _ALLOW
    response.render()
    return response


def place_bid(request: HttpRequest) -> HttpResponse | None:
    """Answer a well-formed bot bid, or None to leave the request to `BidListApi`."""
    authorization = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, raw = authorization.partition(" ")
    if scheme != "Bearer":
        return None
    data = _json_body(request)
    spec = plain_spec(data)
    if spec is None:
        return None
    try:
        idempotency_key = read_idempotency_key(request)
    except InvalidInput:  # BidListApi explains it
        return None
    key = bearer_key(raw.strip())
    if key is None or Scope.BIDS_WRITE not in key.scopes:
        return None
    if (wait := rate_limit_wait(*key_rate_limit(key))) is not None:
        return _render(_problem(exceptions.Throttled(max(wait, 1.0)), request))

    def handle(stored_key: str | None) -> Response:
        result = services.bid_submit(
            team=key.team,
            actor=None,
            spec=spec,
            idempotency_key=stored_key or uuid.uuid4().hex,
            api_key=key,
        )
        assert isinstance(result.order, Bid)
        return Response(placed(result.order, result.round_number, set(spec.gpu_models)), status=201)

    try:
        response = idempotent_call(
            team=key.team,
            key=idempotency_key,
            method="POST",
            path=request.path,
            data=data,
            handler=handle,
        )
    except KeyRefused:
        # The key was revoked, killed or expired since it was remembered (or since it was read):
        # nothing was stored; BidListApi authenticates afresh and explains the refusal.
        forget_key(raw.strip())
        return None
    except DomainError as exc:
        response = _problem(exc, request)
    return _render(response)


def _problem(exc: Exception, request: HttpRequest) -> Response:
    response = exception_handler(exc, {"request": request})
    assert response is not None  # the handler answers every DomainError and Throttled
    return response
