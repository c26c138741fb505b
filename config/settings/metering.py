"""Settings of the metering part of Gridx, read from the environment (see config/settings/env.py)."""

from __future__ import annotations

from .env import env_bool, env_int  # noqa: F401

# Beat entries of this part, merged into CELERY_BEAT_SCHEDULE by base.py.
METERING_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}
