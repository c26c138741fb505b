"""What every API view shares: problem+json errors, idempotent replays, cursor pagination.

Errors follow RFC 9457: `{"type", "title", "status", "detail", "code", "errors": [{"field", "code",
"message"}], "instance"}` with content type application/problem+json. `code` is stable; `errors`
names every offending field by path (`bids[3].min_gpus`).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.db import connection
from django.http import Http404, HttpRequest
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import exceptions, pagination, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .db import prepared_cursor
from .errors import DomainError, FieldError, IdempotencyConflict, InvalidInput, KeyRefused, LimitExceeded
from .models import IdempotencyRecord, Team
from .transactions import request_transaction

PROBLEM_TYPE = "https://gridx.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"
IDEMPOTENCY_HEADER = "Idempotency-Key"

_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
}


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    errors: list[FieldError] | None = None,
    instance: str = "",
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
        "errors": [e.as_dict() for e in errors or []],
    }
    if instance:
        body["instance"] = instance
    return Response(body, status=status, content_type=PROBLEM_CONTENT_TYPE, headers=headers)


def _flatten(detail: Any, path: str = "") -> list[FieldError]:
    """DRF's nested validation errors as a flat list of field paths (`bids[3].gpus`)."""
    if isinstance(detail, dict):
        out: list[FieldError] = []
        for name, value in detail.items():
            key = str(name)
            sub = key if not path else (f"{path}.{key}" if key != "non_field_errors" else path)
            out += _flatten(value, sub)
        return out
    if isinstance(detail, list):
        if all(isinstance(x, exceptions.ErrorDetail | str) for x in detail):
            return [
                FieldError(path or "body", getattr(x, "code", "invalid") or "invalid", str(x)) for x in detail
            ]
        out = []
        for i, value in enumerate(detail):
            if value:
                out += _flatten(value, f"{path}[{i}]")
        return out
    return [FieldError(path or "body", getattr(detail, "code", "invalid") or "invalid", str(detail))]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    request = context.get("request")
    instance = request.path if request is not None else ""
    if isinstance(exc, InvalidInput):
        return problem(exc.status, exc.code, exc.message, errors=exc.errors, instance=instance)
    if isinstance(exc, LimitExceeded):
        errors = [FieldError(exc.field, exc.code, exc.message)] if exc.field else []
        return problem(exc.status, exc.code, exc.message, errors=errors, instance=instance)
    if isinstance(exc, KeyRefused):  # answered as authentication refuses a key
        headers = {"WWW-Authenticate": exc.challenge}
        return problem(exc.status, exc.code, exc.message, instance=instance, headers=headers)
    if isinstance(exc, DomainError):
        return problem(exc.status, exc.code, exc.message, instance=instance)
    if isinstance(exc, Http404):
        return problem(404, "not_found", "no such object", instance=instance)
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        summary = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        return problem(422, "invalid_input", summary or "invalid input", errors=errors, instance=instance)
    if isinstance(exc, exceptions.APIException):
        response = drf_exception_handler(exc, context)
        status = response.status_code if response is not None else exc.status_code
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        headers = {}
        if response is not None:
            headers = {k: v for k, v in response.items() if k in {"Retry-After", "WWW-Authenticate", "Allow"}}
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if isinstance(exc, exceptions.Throttled):
            code = "rate_limited"
            detail = f"rate limit exceeded; retry after {headers.get('Retry-After', '?')} s"
        return problem(status, str(code), str(detail), instance=instance, headers=headers)
    return None


def _request_digest(method: str, path: str, data: Any) -> str:
    body = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method} {path}\n{body}".encode()).hexdigest()


def idempotency_key(request: Request | HttpRequest) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not (1 <= len(key) <= 255) or not key.isprintable():
        raise InvalidInput.one(
            IDEMPOTENCY_HEADER, "invalid", "an Idempotency-Key is 1 to 255 printable characters"
        )
    return key


@functools.cache
def _claim_sql() -> str:
    return (
        f"INSERT INTO {connection.ops.quote_name(IdempotencyRecord._meta.db_table)} (team_id, key, method,"  # noqa: S608
        " path, request_sha256, status_code, response_body, created_at)"
        " VALUES (%s, %s, %s, %s, %s, 0, '', %s) ON CONFLICT (team_id, key) DO NOTHING RETURNING id"
    )


@functools.cache
def _store_sql() -> str:
    return (
        f"UPDATE {connection.ops.quote_name(IdempotencyRecord._meta.db_table)}"  # noqa: S608
        " SET status_code = %s, response_body = %s WHERE team_id = %s AND key = %s"
    )


def _claim(team: Team, key: str, method: str, path: str, digest: str) -> IdempotencyRecord | None:
    """Store a fresh record for (team, key) and return None, or return the existing one, locked.

    On PostgreSQL one `INSERT … ON CONFLICT DO NOTHING`: a concurrent request with the same key
    waits on the unique index until the first commits (then finds its record) or rolls back (then
    inserts its own).
    """
    if connection.vendor == "postgresql":
        with prepared_cursor() as cursor:
            cursor.execute(_claim_sql(), [team.pk, key, method, path, digest, timezone.now()])
            if cursor.fetchone() is not None:
                return None
        return IdempotencyRecord.objects.select_for_update().get(team=team, key=key)
    record, created = IdempotencyRecord.objects.select_for_update().get_or_create(
        team=team, key=key, defaults={"method": method, "path": path, "request_sha256": digest}
    )
    return None if created else record


def idempotent(request: Request, team: Team, handler: Callable[[str | None], Response]) -> Response:
    """Run `handler` once per (team, Idempotency-Key); a retry gets the first response back."""
    return idempotent_call(
        team=team,
        key=idempotency_key(request),
        method=request.method or "",
        path=request.path,
        data=request.data,
        handler=handler,
    )


def idempotent_call(
    *,
    team: Team,
    key: str | None,
    method: str,
    path: str,
    data: Any,
    handler: Callable[[str | None], Response],
) -> Response:
    """Run `handler` once per (team, key); a retry gets the first response back.

    The stored response and the handler's writes commit together, in one transaction in which the
    services add no savepoints (`request_transaction`). A concurrent retry blocks on the record's
    unique index until the first commits, then replays it; the same key with another body is a
    409. A request that failed stored nothing, so its retry runs afresh. `data` is the parsed
    body: the DRF views and the bid fast path (`auctions.api_fast`) digest it alike.
    """
    if key is None:
        with request_transaction():
            return handler(None)
    digest = _request_digest(method, path, data)
    with request_transaction():
        record = _claim(team, key, method, path[:300], digest)
        if record is not None:
            if record.request_sha256 != digest:
                raise IdempotencyConflict(key)
            return Response(
                json.loads(record.response_body),
                status=record.status_code,
                headers={"Idempotent-Replayed": "true"},
            )
        response = handler(key)
        with prepared_cursor() as cursor:  # raw: the ORM's compile costs more than the statement here
            cursor.execute(
                _store_sql(), [response.status_code, json.dumps(response.data, default=str), team.pk, key]
            )
    return response


class IdCursorPagination(pagination.CursorPagination):
    """Newest first by id: stable under inserts, unlike page numbers.

    A bad `limit` or `cursor` is refused (422) rather than silently replaced by the default.
    """

    ordering = "-id"
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.getlist(self.page_size_query_param)
        if not raw:
            return self.page_size
        if len(raw) > 1 or not raw[0].isdigit() or not 1 <= int(raw[0]) <= self.max_page_size:
            raise InvalidInput.one(
                "limit", "invalid", f"limit is one whole number from 1 to {self.max_page_size}"
            )
        return int(raw[0])

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound:
            raise InvalidInput.one(
                "cursor", "invalid_cursor", "use the `next` or `previous` URL of a page as it was given"
            ) from None


class StrictCharField(serializers.CharField):
    """Text only: a number or a boolean where text belongs is refused, not turned into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("must be a string", code="not_a_string")
        return super().to_internal_value(data)


# --- Schema helpers ----------------------------------------------------------------------------


class FieldErrorSerializer(serializers.Serializer[Any]):
    field = serializers.CharField(help_text="Path of the offending input, e.g. `bids[3].min_gpus`.")
    code = serializers.CharField(help_text="Stable machine code of the broken rule.")
    message = serializers.CharField(help_text="What to change, for a person.")


class ProblemSerializer(serializers.Serializer[Any]):
    """RFC 9457 problem details."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField()
    instance = serializers.CharField(required=False)


# `errors` would shadow Serializer.errors as a class attribute; declared after the class instead.
ProblemSerializer._declared_fields["errors"] = FieldErrorSerializer(many=True)


_PROBLEM_TEXT = {
    405: "The method is not allowed on this path.",
    400: "Malformed request (bad JSON, bad header).",
    401: "Missing, unknown, expired or revoked credentials.",
    403: "Authenticated, but the key or role lacks the scope.",
    404: "No such object, or it belongs to another team.",
    409: "Conflicts with the current state, or an Idempotency-Key reused with another body.",
    422: "Input broke rules; `errors` lists every field and rule. Nothing was stored.",
    429: "Rate limit exceeded; retry after `Retry-After` seconds.",
}


def problems(*statuses: int) -> dict[tuple[int, str], OpenApiResponse]:
    """Error responses for a schema, each an application/problem+json ProblemSerializer."""
    return {
        (s, PROBLEM_CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description=_PROBLEM_TEXT[s])
        for s in statuses
    }


READ_ERRORS = (401, 403, 429)
WRITE_ERRORS = (400, 401, 403, 409, 422, 429)


def paginated(item: type[serializers.Serializer[Any]]) -> serializers.Serializer[Any]:
    """The schema of a cursor page of `item`s."""
    return inline_serializer(
        name=f"Paginated{item.__name__}",
        fields={
            "next": serializers.CharField(allow_null=True, help_text="URL of the next page, or null."),
            "previous": serializers.CharField(
                allow_null=True, help_text="URL of the previous page, or null."
            ),
            "results": item(many=True),
        },
    )
