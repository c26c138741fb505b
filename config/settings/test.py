"""Test settings: the real PostgreSQL and Redis, never SQLite or the filesystem broker."""

from __future__ import annotations

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789abcdef")

from .base import *  # noqa: E402,F403
from .base import DATABASES  # noqa: E402

DATABASES["default"]["CONN_MAX_AGE"] = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed; tests only  # noqa: S303

from .env import env_bool  # noqa: E402

# Unit tests clear in-process; the chord path is tested explicitly (tests/auctions/test_lifecycle.py).
CLEARING_SCALE_OUT = env_bool("CLEARING_SCALE_OUT", False)

# Several engineers (or agents) on one machine each run the suite: GRIDX_TEST_DB names a separate
# test database so concurrent runs never drop each other's. REDIS_URL chooses the Redis db likewise.
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("GRIDX_TEST_DB", "test_test")}
