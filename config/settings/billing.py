"""Settings of the billing part of Gridx, read from the environment (see config/settings/env.py)."""

from __future__ import annotations

import os

from .env import env_bool, env_int  # noqa: F401

# Statements: a period is stated this many seconds after it ends, so late metering can arrive.
BILLING_GRACE_SECONDS = env_int("BILLING_GRACE_SECONDS", 3600, minimum=0)
# A statement period: one UTC day by default. Shorter periods (a divisor of a day, aligned to UTC
# midnight) exist for the demo, where a newcomer should see a statement minutes after delivery.
BILLING_STATEMENT_SECONDS = env_int("BILLING_STATEMENT_SECONDS", 86400, minimum=60)
if 86400 % BILLING_STATEMENT_SECONDS:
    raise ValueError(f"BILLING_STATEMENT_SECONDS={BILLING_STATEMENT_SECONDS} must divide a day (86400)")
# Days back that later evidence is still looked for (and turned into adjustment statements).
BILLING_ADJUSTMENT_DAYS = env_int("BILLING_ADJUSTMENT_DAYS", 7)
# The same look-back in seconds, when set (0: use the days). The demo's few-minute periods look back
# half an hour, so each statement run re-checks a few dozen periods per lease, not a day's worth.
BILLING_ADJUSTMENT_SECONDS = env_int("BILLING_ADJUSTMENT_SECONDS", 0, minimum=0)
# Below this share of leased GPU-seconds delivered (basis points; 9900 = 99%) the buyer is credited.
BILLING_SLA_BPS = env_int("BILLING_SLA_BPS", 9900, minimum=0)
# The SLA credit as a multiple of the undelivered value, in basis points (10000 = 1x).
BILLING_SLA_CREDIT_MULTIPLE_BPS = env_int("BILLING_SLA_CREDIT_MULTIPLE_BPS", 10000, minimum=0)
# The platform's fee on each charge, in basis points (1000 = 10%).
BILLING_FEE_BPS = env_int("BILLING_FEE_BPS", 1000, minimum=0)
# Invoices cover one UTC day ("daily"), one ISO week starting Monday ("weekly") or one statement
# period ("statement": the demo's short invoices).
BILLING_PERIOD = os.environ.get("BILLING_PERIOD", "daily")
if BILLING_PERIOD not in {"daily", "weekly", "statement"}:
    raise ValueError(f"BILLING_PERIOD={BILLING_PERIOD!r} must be 'daily', 'weekly' or 'statement'")
# A team whose payment has been failing this many days cannot place new bids until it pays.
BILLING_SUSPEND_AFTER_DAYS = env_int("BILLING_SUSPEND_AFTER_DAYS", 3, minimum=0)
# Console credits and refunds above this amount need a second staff member's approval.
BILLING_APPROVAL_THRESHOLD_CENTS = env_int("BILLING_APPROVAL_THRESHOLD_CENTS", 50_000, minimum=0)
# Move buyers' under-delivery (SLA) credits onto the sellers who served the lease when the
# invoice is paid (`clawback:stmt:{id}`); off: the platform funds them (docs/billing.md).
BILLING_SELLER_CLAWBACK = env_bool("BILLING_SELLER_CLAWBACK", False)
# Stripe's address; empty means real Stripe. The demo and tests point it at the local stand-in.
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "")
# Webhook signatures older than this are refused (Stripe's own default).
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env_int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", 300)

# How often beat builds statements, runs invoices and sends payouts (the demo runs them often).
BILLING_TASK_SECONDS = env_int("BILLING_TASK_SECONDS", 300)

# Beat entries of this part, merged into CELERY_BEAT_SCHEDULE by base.py.
BILLING_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "billing-statements": {
        "task": "billing.tasks.statements_build_task",
        "schedule": float(BILLING_TASK_SECONDS),
    },
    "billing-invoices": {"task": "billing.tasks.invoices_run_task", "schedule": float(BILLING_TASK_SECONDS)},
    "billing-payouts": {"task": "billing.tasks.payouts_run_task", "schedule": float(BILLING_TASK_SECONDS)},
    "billing-events": {"task": "billing.tasks.events_sweep_task", "schedule": 120.0},
}
