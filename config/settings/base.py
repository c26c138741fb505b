"""Settings shared by every environment, read from the environment.

Defaults give the embedded demo (SQLite and kombu's filesystem transport under var/); setting
DATABASE_URL and REDIS_URL swaps in PostgreSQL and Redis with no code change.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
import django_stubs_ext
from celery.schedules import crontab

from auctions.engine import rounds as engine_rounds

from .env import env_bool, env_int

# Lets admin and other Django generics be subscripted at runtime, as the type checker sees them.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("GRIDX_VAR_DIR", BASE_DIR / "var"))


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once into var/ (demo only)."""
    if key := os.environ.get("SECRET_KEY"):
        return key
    path = VAR_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    # Created with mode 0600 so the key is not readable by other users of the machine.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "marketplace",
    "auctions",
    "metering",
    "billing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Bots' single bids, before the rest of the stack (auctions/api_fast.py, docs/api.md).
    "auctions.api_fast.FastBidMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "marketplace.web.nav",
            ],
        },
    },
]

DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'gridx.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The demo runs web, worker and beat on one SQLite file: wait for locks instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
# The bid path's fixed statements are prepared once per connection (marketplace/db.py); turn off
# behind a connection pooler in transaction mode that cannot keep prepared statements.
DATABASE_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", True)
# How long a web process remembers an API key it found live, for the bid fast path's next bids
# (marketplace/api_auth.py bearer_key); the bid's transaction checks the key again under a lock,
# so a revoked or killed key places nothing in that time. 0 looks the key up on every request.
API_KEY_CACHE_SECONDS = env_int("API_KEY_CACHE_SECONDS", 5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "marketplace.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# Our CSS and JS plus static/vendor/ (htmx and Chart.js, fetched from npm by scripts/fetch_static.py).
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- The market -------------------------------------------------------------------------------
ROUND_INTERVAL_MINUTES = env_int("ROUND_INTERVAL_MINUTES", 15)
# Seconds override minutes; only process tests use sub-minute rounds.
ROUND_INTERVAL_SECONDS = env_int("ROUND_INTERVAL_SECONDS", ROUND_INTERVAL_MINUTES * 60)
SLOT_MINUTES = env_int("SLOT_MINUTES", 60)
if 60 % SLOT_MINUTES != 0:
    # Bids ask for whole hours; every whole hour must be a whole number of slots.
    raise ValueError(f"SLOT_MINUTES={SLOT_MINUTES} must divide 60 (e.g. 15, 20, 30 or 60)")
MAX_HORIZON_DAYS = env_int("MAX_HORIZON_DAYS", 14)
MAX_OPEN_BIDS = env_int("MAX_OPEN_BIDS", 5000)
MAX_GPUS_PER_ORDER = env_int("MAX_GPUS_PER_ORDER", 4096)
# A price above this is refused as absurd: $1,000 per GPU-hour is far beyond any datacentre GPU.
MAX_PRICE_CENTS_PER_GPU_HOUR = env_int("MAX_PRICE_CENTS_PER_GPU_HOUR", 100_000)
# The clearing engine refuses rounds beyond its own limits, so the market must stay inside them or
# its rounds could not be cleared (the engine's `rounds` module is plain Python: no numpy, no Django).
if MAX_PRICE_CENTS_PER_GPU_HOUR > engine_rounds.MAX_CENTS_PER_GPU_HOUR:
    raise ValueError(f"MAX_PRICE_CENTS_PER_GPU_HOUR must be at most {engine_rounds.MAX_CENTS_PER_GPU_HOUR:,}")
if MAX_GPUS_PER_ORDER > engine_rounds.MAX_GPUS:
    raise ValueError(f"MAX_GPUS_PER_ORDER must be at most {engine_rounds.MAX_GPUS:,}")
if MAX_HORIZON_DAYS * 24 * 60 // SLOT_MINUTES > engine_rounds.MAX_SLOTS:
    raise ValueError(
        f"MAX_HORIZON_DAYS x 24 x 60 / SLOT_MINUTES must be at most {engine_rounds.MAX_SLOTS:,} slots"
    )
MARKET_CURRENCY = "usd"

# --- Stripe -----------------------------------------------------------------------------------
STRIPE_API_KEY = os.environ.get("STRIPE_API_KEY", "")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")

# --- Celery (see docs/operations.md for why each setting is what it is) ------------------------
SOLVER_TIME_LIMIT_SECONDS = env_int("SOLVER_TIME_LIMIT_SECONDS", 120)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
# Every task of ours is idempotent (a claim, a unique key or a recorded outcome), so it is acked
# after it ran and re-queued if its worker dies: at-least-once delivery, exactly-once effects.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = SOLVER_TIME_LIMIT_SECONDS + 240
CELERY_TASK_TIME_LIMIT = SOLVER_TIME_LIMIT_SECONDS + 300
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "auctions.tasks.round_clear_task": {"queue": "solver"},
    "auctions.tasks.round_clear_part_task": {"queue": "solver"},
    "auctions.tasks.round_clear_merge_task": {"queue": "solver"},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_TRACK_STARTED = True
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object]
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    # Unacked tasks come back after the visibility timeout: it must outlast the longest task
    # (the solver's hard limit), or a long clearing would be delivered to a second worker.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * CELERY_TASK_TIME_LIMIT + 3600}
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = CELERY_BROKER_TRANSPORT_OPTIONS
else:
    _broker_dir = VAR_DIR / "broker"
    # kombu's filesystem transport and Celery's file backend need their folders to exist.
    for _folder in (
        _broker_dir / "queue",
        _broker_dir / "processed",
        _broker_dir / "control",
        VAR_DIR / "results",
    ):
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Broadcasts (celery control, the pidbox) go here too; kombu's default is ./control in the cwd.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    CELERY_RESULT_BACKEND = f"file://{VAR_DIR / 'results'}"

# Cutoffs fall on whole minutes, so the close tick runs at the start of every minute.
ROUND_TICK_SECONDS = env_int("ROUND_TICK_SECONDS", 0, minimum=0)  # 0: every whole minute
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "round-close-due": {
        "task": "auctions.tasks.round_close_due_task",
        "schedule": float(ROUND_TICK_SECONDS) if ROUND_TICK_SECONDS else crontab(minute="*"),
    },
    "round-clear-sweep": {
        "task": "auctions.tasks.round_clear_sweep_task",
        "schedule": float(ROUND_TICK_SECONDS) if ROUND_TICK_SECONDS else 60.0,
    },
    "orders-expire": {"task": "marketplace.tasks.orders_expire_task", "schedule": 300.0},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# --- Clearing ---------------------------------------------------------------------------------
# The relative MIP gap at which a clearing counts as optimal; fixed and published in every report.
CLEARING_GAP = float(os.environ.get("CLEARING_GAP", "0.0001"))
# Processes the engine may use inside one task; Celery's prefork children cannot fork pools, and
# scale-out happens across workers instead (docs/rounds.md).
CLEARING_WORKERS = env_int("CLEARING_WORKERS", 1)
# Clear a round's independent sub-markets as a Celery chord across workers (docs/rounds.md).
CLEARING_SCALE_OUT = env_bool("CLEARING_SCALE_OUT", True)
# A clearing still running after this many seconds is presumed dead and re-run by the sweep.
CLEARING_STALE_SECONDS = env_int("CLEARING_STALE_SECONDS", CELERY_TASK_TIME_LIMIT + 60)

# --- Per-app settings ---------------------------------------------------------------------------
# Each app keeps its own settings module (read from the environment the same way) and its own beat
# entries, merged here.
from .api import *  # noqa: E402,F403
from .api import API_BEAT_SCHEDULE  # noqa: E402
from .billing import *  # noqa: E402,F403
from .billing import BILLING_BEAT_SCHEDULE  # noqa: E402
from .metering import *  # noqa: E402,F403
from .metering import METERING_BEAT_SCHEDULE  # noqa: E402

CELERY_BEAT_SCHEDULE.update(API_BEAT_SCHEDULE)
CELERY_BEAT_SCHEDULE.update(BILLING_BEAT_SCHEDULE)
CELERY_BEAT_SCHEDULE.update(METERING_BEAT_SCHEDULE)
