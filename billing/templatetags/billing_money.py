"""Template filters for money: integer cents shown as a person reads them, never via floats."""

from __future__ import annotations

from django import template

register = template.Library()

SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}


@register.filter
def money(cents: int | str | None, currency: str = "usd") -> str:
    """`123456|money:"usd"` -> "$1,234.56"; other currencies end with their code; negatives lead with −."""
    if cents is None or cents == "":
        return ""
    value = int(cents)
    whole, rest = divmod(abs(value), 100)
    sign = "−" if value < 0 else ""
    code = (currency or "usd").lower()
    symbol = SYMBOLS.get(code)
    amount = f"{whole:,}.{rest:02d}"
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {code.upper()}"


@register.filter
def gpu_hours(gpu_seconds: int | str | None) -> str:
    """GPU-seconds as GPU-hours with two decimals (display only), e.g. 14400 -> "4.00"."""
    if gpu_seconds is None or gpu_seconds == "":
        return ""
    seconds = int(gpu_seconds)
    hundredths = (abs(seconds) * 100 + 1800) // 3600
    sign = "−" if seconds < 0 else ""
    return f"{sign}{hundredths // 100:,}.{hundredths % 100:02d}"
