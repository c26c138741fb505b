"""`gridx demo`: the seed is idempotent, and the supervisor runs a living market and stops every process."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import time_machine
from django.utils import timezone

from billing.models import StaffTotp
from config.demo import BOTS
from marketplace import grid
from marketplace.models import ApiKey, Bid, Cluster, Gpu, Host, Membership, Offer, Team, User
from marketplace.seed import bot_keys_load, demo_market_seed, staff_totp_code

ROOT = Path(__file__).resolve().parent.parent


def _counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (User, Team, Membership, Cluster, Host, Gpu, Offer, Bid, ApiKey, StaffTotp)
    }


def test_seeding_twice_creates_nothing_twice(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    first = demo_market_seed()
    after_first, keys = _counts(), bot_keys_load()
    secret = StaffTotp.objects.get().secret_encrypted
    second = demo_market_seed()
    assert first["offers"] >= 7 and first["bids"] >= 12 and first["api_keys"] == len(BOTS)
    assert second == {"offers": 0, "bids": 0, "api_keys": 0}
    assert _counts() == after_first
    assert bot_keys_load() == keys and StaffTotp.objects.get().secret_encrypted == secret
    # Six teams in several regions, several GPU models, a working key per bot team.
    assert after_first["Team"] >= 6
    assert Cluster.objects.values("region").distinct().count() >= 3
    assert Gpu.objects.values("gpu_model").distinct().count() >= 4
    assert sorted(keys) == sorted(bot.slug for bot in BOTS)
    assert len(staff_totp_code()) == 6


def test_a_seed_that_straddles_a_slot_boundary_posts_every_order(db, settings, tmp_path):
    # the seed reads the clock a second before a slot boundary; the services check its orders
    # after it: none of them may start in the past
    settings.VAR_DIR, settings.SLOT_MINUTES = tmp_path, 5
    boundary = grid.slot_ceil(timezone.now()) + dt.timedelta(hours=1)
    with time_machine.travel(boundary + dt.timedelta(seconds=1), tick=False):
        created = demo_market_seed(now=boundary - dt.timedelta(seconds=1))
    assert created["offers"] >= 7 and created["bids"] >= 12
    assert Offer.objects.filter(start__lt=boundary + dt.timedelta(seconds=1)).count() == 0


@pytest.mark.parametrize(
    "before", [dt.timedelta(seconds=1), dt.timedelta(seconds=30), dt.timedelta(minutes=3)]
)
def test_a_seed_just_before_a_slot_boundary_reaches_the_market_s_horizon_and_no_further(
    db, settings, tmp_path, before
):
    # its orders start a slot later than the clock's next one, yet its offers end at the horizon
    settings.VAR_DIR, settings.SLOT_MINUTES = tmp_path, 5
    now = grid.slot_ceil(timezone.now()) + dt.timedelta(hours=1) - before
    with time_machine.travel(now, tick=False):
        created = demo_market_seed(now=now)
    assert created["offers"] >= 7
    assert set(Offer.objects.values_list("end", flat=True)) == {grid.horizon_end(now)}


def test_a_lost_bot_key_is_revoked_and_replaced_on_the_next_seed(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    demo_market_seed()
    old = bot_keys_load()
    (tmp_path / "demo-bot-keys.json").unlink()
    assert demo_market_seed()["api_keys"] == len(BOTS)
    new = bot_keys_load()
    assert set(new) == set(old) and all(new[slug] != old[slug] for slug in old)
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == len(BOTS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, key: str = "") -> object:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own test server
        return json.load(response)


def _processes() -> dict[int, tuple[int, int, str]]:
    """Live processes: pid -> (parent, process group, start time), zombies excluded."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            found[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[19])
    return found


def _tree(root: int) -> set[tuple[int, str]]:
    """(pid, start time) of `root`, its descendants and anything sharing a process group with them."""
    procs = _processes()
    found = {root} & set(procs)
    changed = True
    while changed:
        changed = False
        groups = {procs[p][1] for p in found}
        for pid, (parent, group, _start) in procs.items():
            if pid not in found and (parent in found or group in groups):
                found.add(pid)
                changed = True
    return {(p, procs[p][2]) for p in found}


def _still_alive(seen: set[tuple[int, str]]) -> set[tuple[int, str]]:
    """Those of `seen` still running: same pid and same start time (a reused pid is someone else)."""
    procs = _processes()
    return {(p, t) for p, t in seen if p in procs and procs[p][2] == t}


def _wait(what: str, check, deadline: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the demo stopped early:\n{log.read_text()[-4000:]}"
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")


@pytest.mark.slow
def test_the_demo_clears_rounds_with_bots_bidding_and_ctrl_c_stops_every_process(tmp_path):
    port, stripe_port = _free_port(), _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "GRIDX_TEST_DB"}
    }
    # SQLite and the filesystem broker in a folder of its own; rounds every 20 s, ticked every 2 s.
    env.update(GRIDX_VAR_DIR=str(tmp_path / "var"), ROUND_TICK_SECONDS="2", SECRET_KEY="demo-test-only")
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                "-m",
                "config.cli",
                "demo",
                "--port",
                str(port),
                "--stripe-port",
                str(stripe_port),
            ]
            + ["--round-seconds", "20"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}/api/v1/"
        deadline = time.monotonic() + 150
        _wait("the web server", lambda: b"Gridx demo is running" in log.read_bytes(), deadline, proc, log)
        keys = json.loads((tmp_path / "var" / "demo-bot-keys.json").read_text())

        def cleared() -> bool:
            rounds = _get(base + "market/rounds")["results"]  # type: ignore[index]
            return any(r["status"] == "cleared" for r in rounds)

        def bot_bid() -> bool:
            for key in keys.values():
                prefix = key.split("_")[1]
                if any(b["api_key"] == prefix for b in _get(base + "bids", key)["results"]):  # type: ignore[index]
                    return True
            return False

        _wait("a cleared round", cleared, deadline, proc, log)
        _wait("a bot's bid", bot_bid, deadline, proc, log)
        # supervisor, web and its 2 workers, worker and its pool, beat, stripe stand-in, agents, 2 bots
        assert len(_tree(proc.pid)) >= 10
    finally:
        everything = _tree(proc.pid)
        os.kill(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        finally:
            left = _still_alive(everything)
            for pid, _start in left:  # never leave strays behind, even when the assertions fail
                os.kill(pid, signal.SIGKILL)
    assert left == set(), f"processes left after Ctrl-C: {left}"
    assert code == 0, log.read_text()[-4000:]
