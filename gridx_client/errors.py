"""Exceptions raised by the client, one per kind of problem+json answer the API gives.

Every one is a `GridxError` carrying the answer's `status`, its stable `code`, the human `detail`
and `errors` (each offending field by path, e.g. `bids[3].min_gpus`), so a bot can branch on the
class or on `code` and show a person the field paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldProblem:
    """One broken rule: the input's path, a stable code, and what to change."""

    field: str
    code: str
    message: str


class GridxError(Exception):
    """An API call that did not succeed; `status` is 0 when no HTTP answer arrived at all."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        errors: list[FieldProblem] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = list(errors or [])
        self.headers = dict(headers or {})
        super().__init__(self._message())

    def _message(self) -> str:
        text = f"{self.status} {self.code}: {self.detail}"
        if self.errors:
            text += " [" + "; ".join(f"{e.field}: {e.message}" for e in self.errors) + "]"
        return text

    @property
    def fields(self) -> dict[str, list[str]]:
        """The offending field paths, each with its rule codes."""
        out: dict[str, list[str]] = {}
        for e in self.errors:
            out.setdefault(e.field, []).append(e.code)
        return out


class TransportError(GridxError):
    """The server could not be reached, or the connection broke, on every attempt."""


class BadRequest(GridxError):
    """400: the request itself was malformed (bad JSON, bad header)."""


class AuthenticationError(GridxError):
    """401: missing, unknown, expired, revoked or killed API key."""


class PermissionDenied(GridxError):
    """403: the key lacks the scope, or the role forbids the action."""


class NotFound(GridxError):
    """404: no such object, or it belongs to another team."""


class Conflict(GridxError):
    """409: the request conflicts with the current state (e.g. a bid no longer open)."""


class IdempotencyConflict(Conflict):
    """409 `idempotency_conflict`: an Idempotency-Key was reused with a different body."""


class ValidationError(GridxError):
    """422: input broke rules; `errors` names every field and rule. Nothing was stored."""


class RateLimited(GridxError):
    """429: too many requests; `retry_after` is the server's Retry-After in seconds."""

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))


class ServerError(GridxError):
    """5xx: the server failed; retried automatically before this is raised."""


_BY_STATUS: dict[int, type[GridxError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    422: ValidationError,
    429: RateLimited,
}


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the API sends delta-seconds, never an HTTP date)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(seconds, 0.0)


def error_from_response(status: int, body: Any, headers: Mapping[str, str]) -> GridxError:
    """The exception for a failed response, from its problem+json body when it has one."""
    problem: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
    code = str(problem.get("code") or f"http_{status}")
    detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    errors = [
        FieldProblem(str(e.get("field", "")), str(e.get("code", "")), str(e.get("message", "")))
        for e in problem.get("errors") or []
        if isinstance(e, Mapping)
    ]
    lowered = {k.lower(): v for k, v in headers.items()}
    if status == 409 and code == "idempotency_conflict":
        cls: type[GridxError] = IdempotencyConflict
    elif status >= 500:
        cls = ServerError
    else:
        cls = _BY_STATUS.get(status, GridxError)
    return cls(status, code, detail, errors, headers=lowered)
