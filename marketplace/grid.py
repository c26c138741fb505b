"""The slot grid: UTC time cut into SLOT_MINUTES slots aligned to the Unix epoch.

Every order window is half-open `[start, end)` with both ends on the grid.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def slot_seconds() -> int:
    """Length of one slot in seconds."""
    return int(settings.SLOT_MINUTES) * 60


def is_on_grid(moment: dt.datetime) -> bool:
    """True when `moment` is aware and falls exactly on a slot boundary."""
    if moment.tzinfo is None:
        return False
    delta = moment - EPOCH
    return delta.microseconds == 0 and (delta.days * 86400 + delta.seconds) % slot_seconds() == 0


def slot_floor(moment: dt.datetime) -> dt.datetime:
    """The start of the slot containing `moment`."""
    seconds = int((moment - EPOCH).total_seconds())
    return EPOCH + dt.timedelta(seconds=seconds - seconds % slot_seconds())


def slot_ceil(moment: dt.datetime) -> dt.datetime:
    """The first slot boundary at or after `moment`."""
    floor = slot_floor(moment)
    return floor if floor == moment else floor + dt.timedelta(seconds=slot_seconds())


def horizon_end(now: dt.datetime) -> dt.datetime:
    """The latest moment an order window may reach: MAX_HORIZON_DAYS after the next slot."""
    return slot_ceil(now) + dt.timedelta(days=int(settings.MAX_HORIZON_DAYS))
