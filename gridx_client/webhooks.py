"""Check that a webhook came from Gridx: the documented recipe, with no Django.

`Gridx-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`. Verify over the
raw body bytes exactly as received (not re-serialised JSON), compare in constant time, and refuse a
`t` more than `tolerance` seconds from your clock, so that a captured delivery cannot be replayed later.
Several `v1=` values may appear (while a secret rotates); any one matching is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Gridx-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """The signature does not verify; the message says why. Answer the delivery with a 400."""


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """A Gridx-Signature header value, e.g. for testing your receiver."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_mac(secret, t, body)}"


def verify(
    secret: str,
    body: bytes | str,
    header: str | None,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    *,
    now: int | None = None,
) -> int:
    """Return the delivery's timestamp if `header` signs `body` with `secret`; raise otherwise."""
    raw = body.encode() if isinstance(body, str) else body
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in (header or "").split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            timestamps.append(value)
        elif name == "v1":
            signatures.append(value)
    try:
        t = int(timestamps[0])
    except (IndexError, ValueError):
        raise SignatureError("the header has no timestamp t=…") from None
    if not signatures:
        raise SignatureError("the header has no v1=… signature")
    expected = _mac(secret, t, raw)
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise SignatureError("no v1 signature matches this body and secret")
    current = int(time.time()) if now is None else now
    if abs(current - t) > tolerance:
        raise SignatureError(f"timestamp {t} is more than {tolerance} s from now ({current})")
    return t
