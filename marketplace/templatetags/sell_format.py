"""Template filters of the Sell and Developers pages: money in dollars, times in UTC, durations."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils import timezone

from marketplace import web

register = template.Library()


@register.filter
def dollars(cents: int | None) -> str:
    """Integer cents as dollars with a thousands separator: 123456 → "$1,234.56"."""
    return web.dollars(cents)


@register.filter
def utc(moment: dt.datetime | None) -> str:
    """An aware time as "2026-12-01 10:00 UTC"; "–" for none."""
    if moment is None:
        return "–"
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@register.filter
def hours_between(start: dt.datetime, end: dt.datetime) -> int:
    """Whole hours of a half-open window on the slot grid."""
    return int((end - start).total_seconds() // 3600)


@register.filter
def ago(moment: dt.datetime | None) -> str:
    """How long ago, in plain words ("3 min ago", "2 h ago", "5 days ago"); "never" for none."""
    if moment is None:
        return "never"
    seconds = int((timezone.now() - moment).total_seconds())
    if seconds < 60:
        return "just now" if seconds >= 0 else "in the future"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400 * 2:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"
