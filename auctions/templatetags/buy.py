"""Template filters of the buyer's pages: money in dollars, list items by index."""

from __future__ import annotations

from typing import Any

from django import template

from marketplace.web import dollars as dollars_of

register = template.Library()


@register.filter
def dollars(cents: int | float | None) -> str:
    """Integer cents as "$1,234.56"."""
    return dollars_of(cents)


@register.filter
def index(items: Any, i: int) -> Any:
    try:
        return items[i]
    except (IndexError, KeyError, TypeError):
        return None


@register.filter
def gpu_hours(seconds: int | float | None) -> str:
    """GPU-seconds as GPU-hours with one decimal, e.g. 5400 -> "1.5"."""
    return f"{(seconds or 0) / 3600:,.1f}"
