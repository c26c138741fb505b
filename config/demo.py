"""`gridx demo`: set up the embedded market and supervise its processes until Ctrl-C.

The demo runs on SQLite and kombu's filesystem transport under var/ (GRIDX_VAR_DIR) unless
DATABASE_URL and REDIS_URL say otherwise. It starts the web server, a Celery worker and beat,
simulated gridx-agents, two example bots and the Stripe stand-in. Every child gets its own process
group, so Ctrl-C (or SIGTERM) stops all of them and whatever they started. docs/demo.md explains it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# A living market a newcomer can follow in minutes: 2-minute rounds, 5-minute slots (a lease starts
# a few minutes after its round clears), a short solver limit (demo rounds clear in seconds), and
# 2-minute statement periods invoiced 40 s after they end. Each can be overridden from the
# environment; production defaults are untouched (config/settings/).
DEMO_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.base",
    "ROUND_INTERVAL_MINUTES": "2",
    "SLOT_MINUTES": "5",
    "MAX_HORIZON_DAYS": "2",
    "SOLVER_TIME_LIMIT_SECONDS": "20",
    "BILLING_STATEMENT_SECONDS": "120",
    "BILLING_GRACE_SECONDS": "40",
    "BILLING_PERIOD": "statement",
    "BILLING_TASK_SECONDS": "20",
    "BILLING_ADJUSTMENT_SECONDS": "1800",
    "METERING_GRACE_S": "120",
    # Demo bots run their webhook receivers on plain http on this machine.
    "WEBHOOKS_ALLOW_HTTP": "1",
}
STOP_GRACE_SECONDS = 10.0
DEMO_PASSWORD = "gridx-demo"  # noqa: S105 - a published demo login, never used outside the demo
BOT_KEYS_FILE = "demo-bot-keys.json"


@dataclass(frozen=True)
class DemoBot:
    """One example bot of the demo: the team it trades for and what it buys (examples/bot.py flags)."""

    team: str
    gpu_model: str
    max_limit_cents: int
    gpus: int = 4
    duration_hours: int = 1

    @property
    def slug(self) -> str:
        return self.team.lower().replace(" ", "-")


# Echo and Fjord trade through the API (marketplace/seed.py makes them a key each); Delta
# (buyer@demo.gridx.dev) is left to the person trying the demo.
BOTS = [
    DemoBot("Echo Research", "H100-SXM-80GB", max_limit_cents=260),
    DemoBot("Fjord Robotics", "A100-SXM-80GB", max_limit_cents=160),
]
# Bids stay flexible for this many hours past their duration: enough choice for the optimiser, and
# few enough placements that the demo's 5-minute slots clear in a second or two.
BID_SLACK_HOURS = 6


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _manage(*args: str) -> list[str]:
    return [sys.executable, str(BASE_DIR / "manage.py"), *args]


def demo_env(
    base: dict[str, str], *, round_seconds: int | None = None, stripe_port: int = 12111
) -> dict[str, str]:
    """The children's environment: the demo's settings unless the caller's environment sets them."""
    env = {**DEMO_ENV, **base}
    if round_seconds:
        env["ROUND_INTERVAL_SECONDS"] = str(round_seconds)
    env["PYTHONUNBUFFERED"] = "1"
    if not env.get("STRIPE_API_KEY"):
        # No Stripe key: billing talks to the local stand-in (billing/stripe_standin), never to Stripe.
        env.setdefault("STRIPE_API_BASE", f"http://127.0.0.1:{stripe_port}")
        env.setdefault("STRIPE_WEBHOOK_SECRET", "whsec_demo_standin_only")
    return env


def var_dir(env: dict[str, str]) -> Path:
    return Path(env.get("GRIDX_VAR_DIR") or BASE_DIR / "var")


def _setup(env: dict[str, str]) -> None:
    for cmd in (["migrate", "--noinput"], ["collectstatic", "--noinput", "-v0"], ["demo_seed"]):
        subprocess.run(_manage(*cmd), check=True, env=env, cwd=BASE_DIR)  # noqa: S603


def _wait_until_up(url: str, children: dict[str, subprocess.Popen[bytes]], timeout: float = 120.0) -> bool:
    """Wait for /healthz to answer, so agents and bots do not start against a server still booting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children.values()):
            return False
        try:
            with urllib.request.urlopen(url + "healthz", timeout=5) as response:  # noqa: S310 - our own URL
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False


def _bot_commands(env: dict[str, str], url: str) -> dict[str, list[str]]:
    """One examples/bot.py per demo bot team, with the API key the seed wrote down."""
    keys_path = var_dir(env) / BOT_KEYS_FILE
    keys = json.loads(keys_path.read_text()) if keys_path.exists() else {}
    commands = {}
    for bot in BOTS:
        slug = bot.slug
        if slug not in keys:
            continue
        commands[f"bot-{slug}"] = [
            sys.executable,
            str(BASE_DIR / "examples" / "bot.py"),
            "--base-url",
            url.rstrip("/"),
            "--api-key",
            keys[slug],
            "--gpu-model",
            bot.gpu_model,
            # A long-lived appetite: the bots keep trading for the whole demo.
            "--gpu-hours",
            "100000",
            "--budget-cents",
            "1000000000",
            "--max-limit-cents",
            str(bot.max_limit_cents),
            "--gpus",
            str(bot.gpus),
            "--duration-hours",
            str(bot.duration_hours),
            "--window-hours",
            str(bot.duration_hours),
            "--max-bids",
            "2",
            "--poll-seconds",
            "5",
        ]
    return commands


def _signal_group(child: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)


def stop_all(children: dict[str, subprocess.Popen[bytes]], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM each child (it stops its own workers), then SIGKILL whatever is left of its group."""
    for child in children.values():
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=max(deadline - time.monotonic(), 0.1))
    # The leaders have exited or run out of time: nothing of their groups may outlive the demo.
    for child in children.values():
        _signal_group(child, signal.SIGKILL)
        if child.poll() is None:
            child.wait()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gridx demo", description="Run the embedded Gridx demo market.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--stripe-port", type=int, default=12111, help="the Stripe stand-in's port")
    parser.add_argument("--round-seconds", type=int, default=None, help="round interval (default: 2 minutes)")
    parser.add_argument("--no-setup", action="store_true", help="skip migrate, collectstatic and seeding")
    parser.add_argument("--no-bots", action="store_true", help="do not start the example bots")
    args = parser.parse_args(argv)

    env = demo_env(dict(os.environ), round_seconds=args.round_seconds, stripe_port=args.stripe_port)
    var = var_dir(env)
    var.mkdir(parents=True, exist_ok=True)
    if not args.no_setup:
        _setup(env)

    url = f"http://{args.host}:{args.port}/"
    commands: dict[str, list[str]] = {
        # No control socket: its default path is shared by every gunicorn of this user.
        "web": [
            _bin("gunicorn"),
            "config.wsgi",
            "-b",
            f"{args.host}:{args.port}",
            "-w",
            "2",
            "--no-control-socket",
        ],
        "worker": [
            _bin("celery"),
            "-A",
            "config",
            "worker",
            "-Q",
            "default,solver",
            "-c",
            "2",
            "-l",
            "INFO",
            "-n",
            f"demo-{args.port}@%h",
        ],
        "beat": [
            _bin("celery"),
            "-A",
            "config",
            "beat",
            "-l",
            "INFO",
            "-s",
            str(var / "celerybeat-schedule"),
        ],
    }
    if env.get("STRIPE_API_BASE", "").startswith("http://127.0.0.1:"):
        commands["stripe"] = [
            sys.executable,
            "-m",
            "billing.stripe_standin",
            "--port",
            env["STRIPE_API_BASE"].rsplit(":", 1)[1],
            "--webhook-url",
            f"{url}billing/stripe/webhook",
            "--webhook-secret",
            env["STRIPE_WEBHOOK_SECRET"],
            "--demo",
            # Kept under var/ with the database's data, so a restarted demo's payouts still find
            # the Connect accounts (rm -rf var/ resets both).
            "--state-file",
            str(var / "stripe-standin.json"),
        ]
    # Started once the web server answers: simulated gridx-agents (fake backend) on the demo sellers'
    # hosts, so leases get verified delivered seconds, and the example bots trading through the API.
    later: dict[str, list[str]] = {
        "agents": _manage("metering_demo_agents", "--server", url.rstrip("/"), "--interval-seconds", "20"),
    }
    if not args.no_bots:
        later.update(_bot_commands(env, url))

    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    def start(name: str, cmd: list[str]) -> None:
        children[name] = subprocess.Popen(cmd, env=env, cwd=BASE_DIR, start_new_session=True)  # noqa: S603

    exit_code = 0
    try:
        for name, cmd in commands.items():
            start(name, cmd)
        if not _wait_until_up(url, children) and not stopping:
            sys.stderr.write(f"demo: the web server did not come up at {url}; stopping\n")
            return 1
        if not stopping:
            # Sellers get Connect accounts once the stand-in is up, so their payouts are sent.
            subprocess.run(_manage("demo_seed", "--connect-sellers"), env=env, cwd=BASE_DIR, check=False)  # noqa: S603
            for name, cmd in later.items():
                start(name, cmd)
            sys.stdout.write(_banner(url, env, bots=[n for n in later if n.startswith("bot-")]))
            sys.stdout.flush()
        while not stopping:
            for name, child in list(children.items()):
                if child.poll() is None:
                    continue
                if name.startswith("bot-") and child.returncode == 0:
                    # A bot that reached its target or budget is done; the market goes on.
                    sys.stderr.write(f"demo: {name} finished\n")
                    del children[name]
                    continue
                sys.stderr.write(f"demo: {name} exited with {child.returncode}; stopping the rest\n")
                exit_code = 1
                stopping = True
            time.sleep(0.5)
    finally:
        sys.stderr.write("demo: stopping every process\n")
        stop_all(children)
    return exit_code


def _banner(url: str, env: dict[str, str], *, bots: list[str]) -> str:
    minutes = int(env.get("ROUND_INTERVAL_SECONDS") or 60 * int(env["ROUND_INTERVAL_MINUTES"])) / 60
    return (
        f"\nGridx demo is running at {url}\n"
        f"  logins (password {DEMO_PASSWORD}):\n"
        "    buyer@demo.gridx.dev    owner of Delta Models, a buyer team: Buy, Billing\n"
        "    seller@demo.gridx.dev   owner of Acme Compute, a seller team: Sell, earnings\n"
        "    staff@demo.gridx.dev    staff: the billing console at /console/ and /admin/\n"
        "  the console asks staff for a TOTP code: `.venv/bin/gridx demo_seed --staff-code` prints the\n"
        "    current one (or add the secret printed by the seed above to an authenticator app)\n"
        f"  rounds every {minutes:g} min; {len(bots)} example bots trading ({', '.join(bots) or 'none'});\n"
        f"  statements every {int(env['BILLING_STATEMENT_SECONDS']) // 60} min of delivery, invoiced on the"
        " Stripe stand-in\n"
        "  docs/demo.md has a five-minute walkthrough. Ctrl-C stops every process.\n\n"
    )
