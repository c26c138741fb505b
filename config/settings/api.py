"""Settings of the api part of Gridx, read from the environment (see config/settings/env.py)."""

from __future__ import annotations

from .env import env_bool, env_int

# Beat entries of this part, merged into CELERY_BEAT_SCHEDULE by base.py.
API_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}

# Webhooks to teams: a delivery is retried with exponential backoff (base x 2^(n-1), capped) up to
# WEBHOOK_MAX_ATTEMPTS, then marked failed; teams see every attempt and can replay.
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8)
WEBHOOK_RETRY_BASE_SECONDS = env_int("WEBHOOK_RETRY_BASE_SECONDS", 30)
WEBHOOK_RETRY_MAX_SECONDS = env_int("WEBHOOK_RETRY_MAX_SECONDS", 6 * 3600)
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10)
# Plain http endpoints are for local development and the demo only.
WEBHOOKS_ALLOW_HTTP = env_bool("WEBHOOKS_ALLOW_HTTP", False)
MAX_WEBHOOK_ENDPOINTS = env_int("MAX_WEBHOOK_ENDPOINTS", 10)

# Per-key request rate limit (requests per minute, fixed one-minute windows in Redis); a key may
# carry its own. Business limits (open bids per team) stay in the database.
API_RATE_LIMIT_PER_MINUTE = env_int("API_RATE_LIMIT_PER_MINUTE", 1200)
# Bid preview re-clears the last cleared round with one more bid, within this many seconds.
PREVIEW_TIME_LIMIT_SECONDS = env_int("PREVIEW_TIME_LIMIT_SECONDS", 10)
# Stored idempotent responses are kept this long; a retry after that is a new request.
IDEMPOTENCY_TTL_HOURS = env_int("IDEMPOTENCY_TTL_HOURS", 24)

API_BEAT_SCHEDULE.update(
    {
        "webhooks-sweep": {"task": "marketplace.tasks.webhook_sweep_task", "schedule": 60.0},
        "idempotency-prune": {"task": "marketplace.tasks.idempotency_prune_task", "schedule": 3600.0},
        "lease-events": {"task": "auctions.tasks.lease_events_task", "schedule": 60.0},
    }
)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "marketplace.api_auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["marketplace.api_auth.KeyRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "marketplace.api_support.IdCursorPagination",
    "EXCEPTION_HANDLER": "marketplace.api_support.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Gridx API",
    "DESCRIPTION": (
        "The API of Gridx, the sealed-bid exchange for GPU-hours. Authenticate with "
        "`Authorization: Bearer gx_…` (a team API key with scopes). Errors are application/problem+json "
        "with a stable `code` and the offending field paths. Money is integer cents; times are UTC."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "BidStatusEnum": "marketplace.models.BidStatus",
        "OfferStatusEnum": "marketplace.models.OfferStatus",
        "DeliveryStatusEnum": "marketplace.models.DeliveryStatus",
        "RoundStatusEnum": "auctions.models.RoundStatus",
        "InvoiceStatusEnum": "billing.models.InvoiceStatus",
        "PayoutStatusEnum": "billing.models.PayoutStatus",
        "StatementKindEnum": "billing.models.StatementKind",
    },
}
