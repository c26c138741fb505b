"""Agent-facing endpoints of gridx.metering/v1 (docs/metering-agent.md §4-5).

They authenticate by enrolment token or Ed25519 signature, not by session or API key, so they are
plain Django views, exempt from CSRF, reading the raw body bytes (the signature covers exactly those).
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .agent.protocol import (
    MAX_BODY_BYTES,
    PROBLEM_CONTENT_TYPE,
    FieldError,
    Problem,
    ProtocolError,
    parse_enroll_request,
)
from .services import Refusal, host_enroll, report_ingest


def _json(status: int, payload: dict[str, Any]) -> HttpResponse:
    ctype = PROBLEM_CONTENT_TYPE if status >= 400 else "application/json"
    return HttpResponse(json.dumps(payload), status=status, content_type=ctype)


def _problem(problem: Problem) -> HttpResponse:
    return _json(problem.status, problem.to_json())


def _body(request: HttpRequest) -> bytes | None:
    if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_BODY_BYTES:
        return None
    return request.body


@csrf_exempt
@require_POST
def enroll(request: HttpRequest) -> HttpResponse:
    """Register an agent's key and GPUs with a single-use token."""
    body = _body(request)
    if body is None:
        return _problem(Problem(413, "too_large", "Body too large"))
    try:
        enroll_request = parse_enroll_request(body)
    except ProtocolError as exc:
        return _problem(
            Problem(
                400,
                "malformed",
                "Malformed enrolment",
                errors=(FieldError(exc.field, exc.code, exc.message),),
                detail=exc.message,
            )
        )
    try:
        key = host_enroll(request=enroll_request)
    except Refusal as refusal:
        return _problem(refusal.problem)
    gpus = sorted(g["uuid"] for g in key.inventory)
    return _json(201, {"host_id": key.agent_id, "gpus": gpus})


@csrf_exempt
@require_POST
def reports(request: HttpRequest) -> HttpResponse:
    """Ingest one signed envelope of interval reports; answers with the highest contiguous seq."""
    body = _body(request)
    if body is None:
        return _problem(Problem(413, "too_large", "Body too large"))
    try:
        result = report_ingest(headers=request.headers, body=body)
    except Refusal as refusal:
        return _problem(refusal.problem)
    return _json(200, {"acked_seq": result.acked_seq, "status": result.status})
