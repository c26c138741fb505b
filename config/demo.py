"""`gridx demo`: set up the embedded market and supervise its processes until Ctrl-C.

The demo runs on SQLite and kombu's filesystem transport under var/ unless DATABASE_URL and
REDIS_URL say otherwise. Every child gets its own process group so Ctrl-C stops all of them.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _setup(env: dict[str, str]) -> None:
    manage = [sys.executable, str(BASE_DIR / "manage.py")]
    for cmd in (["migrate", "--noinput"], ["collectstatic", "--noinput", "-v0"], ["demo_seed"]):
        subprocess.run([*manage, *cmd], check=True, env=env, cwd=BASE_DIR)  # noqa: S603


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gridx demo", description="Run the embedded Gridx demo market.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--no-setup", action="store_true", help="skip migrate, collectstatic and seeding")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    env.setdefault("ROUND_INTERVAL_MINUTES", "2")
    # Demo bots run their webhook receivers on plain http on this machine.
    env.setdefault("WEBHOOKS_ALLOW_HTTP", "1")
    env["PYTHONUNBUFFERED"] = "1"
    if not env.get("STRIPE_API_KEY"):
        # No Stripe key: billing talks to the local stand-in (billing/stripe_standin), never to Stripe.
        env.setdefault("STRIPE_API_BASE", "http://127.0.0.1:12111")
        env.setdefault("STRIPE_WEBHOOK_SECRET", "whsec_demo_standin_only")
    (BASE_DIR / "var").mkdir(exist_ok=True)
    if not args.no_setup:
        _setup(env)

    var = BASE_DIR / "var"
    commands = {
        "web": [
            _bin("gunicorn"),
            "config.wsgi",
            "-b",
            f"{args.host}:{args.port}",
            "-w",
            "2",
            "--access-logfile",
            "-",
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
            "demo@%h",
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
        # Simulated gridx-agents (fake backend) on the demo sellers' hosts: leases get delivered seconds.
        "agents": [
            sys.executable,
            str(BASE_DIR / "manage.py"),
            "metering_demo_agents",
            "--server",
            f"http://{args.host}:{args.port}",
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
            f"http://{args.host}:{args.port}/billing/stripe/webhook",
            "--webhook-secret",
            env["STRIPE_WEBHOOK_SECRET"],
            "--demo",
        ]
    children: dict[str, subprocess.Popen[bytes]] = {}
    for name, cmd in commands.items():
        children[name] = subprocess.Popen(cmd, env=env, cwd=BASE_DIR, start_new_session=True)  # noqa: S603

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    url = f"http://{args.host}:{args.port}/"
    sys.stdout.write(
        f"\nGridx demo is running at {url}\n"
        "  admin:  staff@demo.gridx.dev / gridx-demo   (also: buyer@…, seller@… with the same password)\n"
        "  Ctrl-C stops every process.\n\n"
    )
    sys.stdout.flush()
    exit_code = 0
    try:
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    sys.stderr.write(f"demo: {name} exited with {child.returncode}; stopping the rest\n")
                    exit_code = 1
                    stopping = True
            time.sleep(0.5)
    finally:
        for child in children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children.values():
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
    return exit_code
