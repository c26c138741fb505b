"""The suite runs on the real services, and the deployable settings are sound."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.cache import cache, caches
from django.db import connection

from config.celery import app as celery_app
from marketplace.models import Bid, BidStatus
from tests.factories import BidFactory

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_the_suite_runs_on_postgresql_and_redis():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        assert "PostgreSQL" in cursor.fetchone()[0]
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    key, value = f"probe-{uuid.uuid4()}", uuid.uuid4().hex
    cache.set(key, value, 30)
    assert cache.get(key) == value
    assert caches["default"].__class__.__name__ == "RedisCache"
    # Read back through a raw Redis client: the value really lives in Redis, not in memory.
    raw = redis.Redis.from_url(settings.REDIS_URL)
    assert any(k.decode().endswith(key) for k in raw.keys(f"*{key}"))
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        assert conn.transport.driver_type == "redis"


def test_production_settings_pass_the_deploy_check():
    # Without DJANGO_ALLOW_ASYNC_UNSAFE, which tests/e2e sets for Playwright in this process only.
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": "k" * 64 + "-Zq9!x$Lw2@vB7#nR4%tY6^mE8&cU1*",
        "DATABASE_URL": "postgres://postgres:postgres@127.0.0.1:5432/test",
        "REDIS_URL": "redis://127.0.0.1:6379/15",
        "ALLOWED_HOSTS": "gridx.example",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.production"
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_a_real_celery_worker_runs_the_expiry_task_against_this_database(tmp_path):
    expired = BidFactory(status=BidStatus.OPEN)
    # Moved to 2020 keeping its length (hour=23 for the end failed whenever it started at 23:00).
    past = expired.earliest_start.replace(year=2020)
    Bid.objects.filter(pk=expired.pk).update(
        earliest_start=past, latest_end=past + (expired.latest_end - expired.earliest_start)
    )
    queue = f"test-{uuid.uuid4().hex[:8]}"
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            queue,
            "-c",
            "1",
            "-P",
            "solo",
            "-l",
            "WARNING",
            "-n",
            f"{queue}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=open(tmp_path / "worker.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        result = celery_app.send_task("marketplace.tasks.orders_expire_task", queue=queue)
        assert result.get(timeout=60) == {"offers": 0, "bids": 1}
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
    expired.refresh_from_db()
    assert expired.status == BidStatus.EXPIRED, (tmp_path / "worker.log").read_text()
