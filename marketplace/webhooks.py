"""Webhook signing, the same recipe as Stripe's, and encryption of the signing secrets at rest.

`Gridx-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`. A receiver
recomputes the HMAC over the raw body bytes, compares in constant time, and refuses a `t` more than
five minutes from its clock (a replayed old delivery). `verify` below is that recipe.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

SIGNATURE_HEADER = "Gridx-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(Exception):
    """A webhook signature that does not verify; the message says why."""


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(24)


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The Gridx-Signature header value for `body` sent at `timestamp` (now by default)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: int | None = None,
) -> int:
    """Check a Gridx-Signature header against the raw body; return its timestamp or raise."""
    parts: dict[str, list[str]] = {}
    for item in (header or "").split(","):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(name, []).append(value)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        raise SignatureError("the header has no timestamp t=…") from None
    signatures = parts.get("v1", [])
    if not signatures:
        raise SignatureError("the header has no v1=… signature")
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise SignatureError("no v1 signature matches this body and secret")
    current = int(time.time()) if now is None else now
    if abs(current - t) > tolerance:
        raise SignatureError(f"timestamp {t} is more than {tolerance} s from now ({current})")
    return t


def _fernet() -> Fernet:
    # A key derived from SECRET_KEY: the database alone does not reveal any endpoint's secret.
    digest = hashlib.sha256(b"gridx.webhook-secret/v1:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt_secret(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise RuntimeError("webhook secret cannot be decrypted: was SECRET_KEY changed?") from None
