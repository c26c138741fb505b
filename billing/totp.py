"""Staff two-factor codes: django-otp's TOTP, with each secret encrypted under a key from SECRET_KEY."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any

from cryptography.fernet import Fernet
from django.conf import settings
from django_otp.oath import TOTP

from .models import StaffTotp


def _fernet() -> Fernet:
    digest = hashlib.sha256(f"gridx-console-totp:{settings.SECRET_KEY}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def device_for(user: Any) -> StaffTotp:
    """The user's device, created (unconfirmed) with a fresh secret on first use."""
    device, _ = StaffTotp.objects.get_or_create(
        user=user, defaults={"secret_encrypted": _fernet().encrypt(secrets.token_bytes(20)).decode()}
    )
    return device


def secret_of(device: StaffTotp) -> bytes:
    return _fernet().decrypt(device.secret_encrypted.encode())


def provisioning_uri(device: StaffTotp, label: str) -> str:
    """An otpauth:// URI for an authenticator app (shown only while the device is unconfirmed)."""
    b32 = base64.b32encode(secret_of(device)).decode().rstrip("=")
    return f"otpauth://totp/Gridx%20console:{label}?secret={b32}&issuer=Gridx"


def verify(device: StaffTotp, code: str, *, now: float | None = None) -> bool:
    """True for a current code never used before (one step of drift either way)."""
    totp = TOTP(secret_of(device), step=30, digits=6)
    totp.time = now if now is not None else time.time()
    if not code.isdigit() or not totp.verify(int(code), tolerance=1, min_t=device.last_step + 1):
        return False
    step = totp.t()  # includes the drift that matched
    # Conditional update: a code (time step) is accepted once, even by two requests at once.
    changed = StaffTotp.objects.filter(pk=device.pk, last_step__lt=step).update(
        last_step=step, confirmed=True
    )
    return changed == 1


def code_for(device: StaffTotp, *, now: float | None = None) -> str:
    """The current code (tests and the demo's seeded staff only)."""
    totp = TOTP(secret_of(device), step=30, digits=6)
    totp.time = now if now is not None else time.time()
    return f"{totp.token():06d}"
