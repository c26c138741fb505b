"""Input rules for orders, each giving a FieldError that names the field and the rule.

Rules collect every problem at once so a caller fixes them in one go.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

from django.conf import settings

from . import grid
from .errors import FieldError

XOR_GROUP_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_MODEL_ALTERNATIVES = 8


def _fmt(moment: dt.datetime) -> str:
    return moment.astimezone(grid.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def count_errors(field: str, value: object, *, minimum: int, maximum: int, noun: str) -> list[FieldError]:
    """An integer count between minimum and maximum (booleans are not counts)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return [FieldError(field, "not_an_integer", f"{noun} must be a whole number")]
    if value < minimum:
        return [FieldError(field, "too_small", f"{noun} must be at least {minimum}, got {value}")]
    if value > maximum:
        return [FieldError(field, "too_large", f"{noun} must be at most {maximum}, got {value}")]
    return []


def price_errors(field: str, value: object) -> list[FieldError]:
    """A price in integer cents per GPU-hour: positive and not absurd."""
    cap = int(settings.MAX_PRICE_CENTS_PER_GPU_HOUR)
    if isinstance(value, bool) or not isinstance(value, int):
        return [FieldError(field, "not_an_integer", "price must be whole cents per GPU-hour")]
    if value <= 0:
        return [
            FieldError(field, "not_positive", f"price must be more than 0 cents per GPU-hour, got {value}")
        ]
    if value > cap:
        return [
            FieldError(
                field,
                "absurd_price",
                f"price {value} cents per GPU-hour is above the market's cap of {cap}; check the units "
                "(cents, per GPU, per hour)",
            )
        ]
    return []


def window_errors(
    start_field: str,
    end_field: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    now: dt.datetime,
    min_length: dt.timedelta | None = None,
    length_field: str = "",
) -> list[FieldError]:
    """A half-open window on the slot grid, not in the past, inside the horizon."""
    errors: list[FieldError] = []
    slot_min = int(settings.SLOT_MINUTES)
    for field, moment in ((start_field, start), (end_field, end)):
        if moment.tzinfo is None:
            errors.append(
                FieldError(field, "naive_datetime", "time must include a timezone (use UTC, e.g. 'Z')")
            )
        elif not grid.is_on_grid(moment):
            errors.append(
                FieldError(
                    field,
                    "off_grid",
                    f"{_fmt(moment)} is not on the {slot_min}-minute slot grid; use "
                    f"{_fmt(grid.slot_floor(moment))} or {_fmt(grid.slot_ceil(moment))}",
                )
            )
    if errors:
        return errors
    earliest = grid.slot_ceil(now)
    if start < now:
        errors.append(
            FieldError(
                start_field,
                "in_past",
                f"{_fmt(start)} is in the past; the earliest you can use is {_fmt(earliest)}",
            )
        )
    horizon = grid.horizon_end(now)
    if end > horizon:
        errors.append(
            FieldError(
                end_field,
                "beyond_horizon",
                f"{_fmt(end)} is past the market's horizon of {settings.MAX_HORIZON_DAYS} days "
                f"(latest {_fmt(horizon)})",
            )
        )
    if start >= end:
        errors.append(
            FieldError(end_field, "end_not_after_start", f"{end_field} must be after {start_field}")
        )
    elif min_length is not None and end - start < min_length:
        hours = min_length.total_seconds() / 3600
        errors.append(
            FieldError(
                length_field or end_field,
                "window_shorter_than_duration",
                f"the window [{_fmt(start)}, {_fmt(end)}) is shorter than the {hours:g} hours asked for",
            )
        )
    return errors


def xor_group_errors(field: str, value: str) -> list[FieldError]:
    if value and not XOR_GROUP_RE.match(value):
        return [
            FieldError(field, "invalid_label", "xor_group is 1 to 64 letters, digits or '_', '.', ':', '-'")
        ]
    return []


def model_list_errors(field: str, names: Iterable[str], known: set[str]) -> list[FieldError]:
    """One or more distinct, known GPU model names."""
    names = list(names)
    if not names:
        return [FieldError(field, "empty", "name at least one GPU model")]
    errors: list[FieldError] = []
    if len(names) > MAX_MODEL_ALTERNATIVES:
        errors.append(
            FieldError(
                field, "too_many", f"name at most {MAX_MODEL_ALTERNATIVES} GPU models, got {len(names)}"
            )
        )
    if len(set(names)) != len(names):
        errors.append(FieldError(field, "duplicate", "each GPU model may be named once"))
    for i, name in enumerate(names):
        if name not in known:
            errors.append(
                FieldError(
                    f"{field}[{i}]",
                    "unknown_model",
                    f"unknown GPU model {name!r}; see /api/v1/market/gpu-models",
                )
            )
    return errors
