"""Settings of the metering part of Gridx, read from the environment (see config/settings/env.py)."""

from __future__ import annotations

from .env import env_bool, env_int  # noqa: F401

# How long after a moment reports about it may still arrive (the agent sends a report a minute
# after its interval starts, and an outbox drains with backoff up to 300 s after an outage).
# Until then a window's delivery is not final (LeaseDelivery.complete is False); after it, time
# without a report counts as not delivered.
METERING_GRACE_S = env_int("METERING_GRACE_S", 900)
# Enrolment tokens are single-use and expire; an hour is enough to run the agent's enrol command.
METERING_TOKEN_TTL_S = env_int("METERING_TOKEN_TTL_S", 3600)
# Energy anomaly: an interval whose counter energy differs from mean power × monotonic time by
# more than this share (percent) and by more than the absolute slack (joules) is flagged. Mean
# power comes from instantaneous samples and energy from the counter, so a few percent of
# difference is normal when the load changes within a sample period.
METERING_ENERGY_TOLERANCE_PCT = env_int("METERING_ENERGY_TOLERANCE_PCT", 25)
METERING_ENERGY_SLACK_J = env_int("METERING_ENERGY_SLACK_J", 200)
# No GPU draws more than this: energy above it for an interval is a counter glitch, not counted.
METERING_MAX_GPU_POWER_W = env_int("METERING_MAX_GPU_POWER_W", 5000)
# A GPU of a lease with no report for this long up to the lease's end (or up to now - grace while
# the lease runs) is flagged as "reports stopped".
METERING_STOPPED_AFTER_S = env_int("METERING_STOPPED_AFTER_S", 600)
# How far back the periodic recomputation looks for leases that may have received late reports.
METERING_RECOMPUTE_LOOKBACK_S = env_int("METERING_RECOMPUTE_LOOKBACK_S", 2 * 86400)

# Beat entries of this part, merged into CELERY_BEAT_SCHEDULE by base.py.
METERING_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "metering-deliveries-recompute": {
        "task": "metering.tasks.deliveries_recompute_task",
        "schedule": 60.0,
    },
}
