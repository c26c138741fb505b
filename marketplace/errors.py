"""Typed errors raised by services and selectors, mapped to problem+json by the API layer.

Every error carries a stable machine `code`; field errors also name the field (a path such as
`gpus` or `bids[3].min_gpus`) and the rule in a sentence a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One broken rule on one input field."""

    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class DomainError(Exception):
    """Base of every error a caller can act on; `code` is stable, `status` is the HTTP status."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(DomainError):
    """The input broke one or more rules; nothing was stored."""

    code = "invalid_input"
    status = 422

    def __init__(self, errors: list[FieldError]) -> None:
        if not errors:
            raise ValueError("InvalidInput needs at least one FieldError")
        self.errors = list(errors)
        summary = "; ".join(f"{e.field}: {e.message}" for e in self.errors)
        super().__init__(summary)

    @classmethod
    def one(cls, field: str, code: str, message: str) -> InvalidInput:
        return cls([FieldError(field, code, message)])


class NotFound(DomainError):
    """The object does not exist or belongs to another team (which we never reveal)."""

    code = "not_found"
    status = 404


class PermissionDenied(DomainError):
    """The actor's role in the team does not allow this action."""

    code = "permission_denied"
    status = 403


class KeyRefused(DomainError):
    """The request's API key stopped working (revoked, killed, expired) after it authenticated the
    request and before the write took effect; nothing was stored. `code` is bad_api_key,
    key_revoked or key_expired, as when authentication refuses the key."""

    code = "key_revoked"
    status = 401
    # The challenge every 401 names (RFC 9110): API keys go in `Authorization: Bearer`.
    challenge = 'Bearer realm="gridx"'


class Conflict(DomainError):
    """The request conflicts with the current state (e.g. cancelling a bid that already won)."""

    code = "conflict"
    status = 409


class IdempotencyConflict(Conflict):
    """The idempotency key was already used with a different request."""

    code = "idempotency_conflict"

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Idempotency key {key!r} was already used with a different request; "
            "use a new key for a new request."
        )
        self.key = key


class LimitExceeded(DomainError):
    """A business limit (open bids, inventory) would be exceeded; nothing was stored."""

    code = "limit_exceeded"
    status = 422

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field
