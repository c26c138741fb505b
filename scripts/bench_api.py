"""Benchmark of the bid API: gunicorn (2 workers) on PostgreSQL and Redis, loaded from loopback.

    make bench-api                          # both worker classes, 60 s of single bids, 60 s of batches
    .venv/bin/python scripts/bench_api.py --worker-class gthread --single-seconds 20 --batch-seconds 20

What it does, in order:
  1. drops and creates the database `gridx_bench` (--database), migrates it, seeds one seller with
     offers, 50 buyer teams (--bots) each with an API key (rate limit high enough not to bind), and
     an open round;
  2. for each worker class: starts `gunicorn config.wsgi -w 2` with DEBUG off, then from this process
     (asyncio, a minimal HTTP/1.1 client, one connection per bot) runs
       - the baseline: GET /healthz (one `SELECT 1`: the framework's ceiling on this machine),
       - single bids: each bot POSTs /api/v1/bids with a fresh Idempotency-Key, back to back
         (closed loop: the most the server answers; latency is then mostly queueing, since 50
         bots waiting on N bids/s wait 50/N s on average),
       - paced single bids: the same bots offering --paced-rate bids/s in all (default 300, then
         150) on a fixed schedule (open loop), latency counted from when each request was due:
         the latency a bot sees at that rate,
       - batches: each bot POSTs /api/v1/bids/batch with --batch-size bids;
  3. prints bids/s, p50/p99 latency, errors by status, the ratio to the baseline, and checks that
     every acknowledged bid id is in the database (lost) and that no unacknowledged bid was stored;
     then the CPU milliseconds each request cost gunicorn, PostgreSQL, Redis and the load
     generator (from /proc), and the rate the machine's CPUs could sustain at that cost if nothing
     else ran: on a shared machine the throughput moves with the neighbours' load, the CPU per
     request much less.

Only the seeding step imports Django (in a child process); the load generator does not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODEL = "H100-SXM-80GB"


# --- setup ----------------------------------------------------------------------------------------


def server_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "DEBUG": "false",
            "DATABASE_URL": f"{args.pg_url}/{args.database}",
            "REDIS_URL": args.redis_url,
            "SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            # The benchmark stores thousands of bids per team: the business limit on open bids
            # would stop it, and measuring that refusal is not the point. (Each bid still counts
            # its team's open bids, here without the limit's bound.)
            "MAX_OPEN_BIDS": "1000000000",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def create_database(args: argparse.Namespace) -> None:
    import psycopg

    with psycopg.connect(f"{args.pg_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{args.database}"')
    subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"],
        check=True,
        env=server_env(args),
        cwd=ROOT,
    )


def seed(bots: int) -> dict[str, Any]:
    """Runs in a child process with Django: seller, offers, bot teams with keys, an open round."""
    import datetime as dt

    import django

    django.setup()
    from auctions import services as auctions
    from marketplace import services as market
    from marketplace.models import Scope, User
    from marketplace.specs import OfferSpec

    seller_user = User.objects.create_user(email="seller@bench.gridx.dev")
    seller = market.team_create(name="Bench Seller", owner=seller_user)
    cluster = market.cluster_create(
        team=seller, actor=seller_user, name="main", region="us-west", interconnect="infiniband"
    )
    host = market.host_register(team=seller, actor=seller_user, cluster_id=cluster.pk, hostname="h1")
    for i in range(64):
        market.gpu_register(
            team=seller, actor=seller_user, host_id=host.pk, gpu_model=MODEL, uuid=f"GPU-bench-{i:04d}"
        )
    round_ = auctions.round_open()
    start = round_.horizon_start
    market.offer_post(
        team=seller,
        actor=seller_user,
        spec=OfferSpec(
            cluster_id=cluster.pk,
            gpu_model=MODEL,
            gpus=64,
            start=start,
            end=start + dt.timedelta(hours=48),
            reserve_cents_per_gpu_hour=150,
        ),
    )
    keys = []
    for i in range(bots):
        user = User.objects.create_user(email=f"bot{i}@bench.gridx.dev")
        team = market.team_create(name=f"Bench Bot {i:03d}", owner=user)
        _, raw = market.api_key_create(
            team=team,
            actor=user,
            name="bench",
            scopes=[Scope.MARKET_READ, Scope.BIDS_WRITE],
            rate_limit_per_minute=10_000_000,
        )
        keys.append(raw)
    return {"keys": keys, "horizon_start": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "round": round_.number}


def run_seed(args: argparse.Namespace, teams: int) -> dict[str, Any]:
    out = subprocess.run(  # noqa: S603
        [sys.executable, __file__, "--seed-only", "--bots", str(teams)],
        check=True,
        env=server_env(args),
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_gunicorn(args: argparse.Namespace, worker_class: str, port: int) -> subprocess.Popen[bytes]:
    cmd = [
        str(BIN / "gunicorn"),
        "config.wsgi",
        "-b",
        f"127.0.0.1:{port}",
        "-w",
        str(args.workers),
        "-k",
        worker_class,
        "--backlog",
        "2048",
        "--timeout",
        "120",
        "--log-level",
        "warning",
    ]
    if worker_class == "gthread":
        cmd += ["--threads", str(args.threads), "--keep-alive", "30"]
    proc = subprocess.Popen(cmd, env=server_env(args), cwd=ROOT, start_new_session=True)  # noqa: S603
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return proc
        except OSError:
            pass
        time.sleep(0.3)
    stop(proc)
    raise SystemExit("gunicorn did not answer /healthz within 60 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- CPU per request ------------------------------------------------------------------------------


def cpu_seconds(gunicorn_pgid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) used so far by each process, with its party: gunicorn (its
    process group), PostgreSQL's and Redis's processes, this load generator, or other.

    Throughput on a shared 2-CPU machine moves with whatever else runs; the CPU each request
    costs each party hardly does, so the report gives both (Linux only; empty elsewhere)."""
    out: dict[int, tuple[str, float]] = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    me = os.getpid()
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        used = (int(fields[11]) + int(fields[12])) / tick
        if int(fields[2]) == gunicorn_pgid:
            party = "gunicorn"
        elif comm == "postgres":
            # Connection backends do the requests' statements; the rest (autovacuum, checkpointer,
            # WAL writer) is the deferred cost of the writes, which moves between phases.
            party = "postgres" if _is_pg_backend(entry) else "postgres background"
        elif comm == "redis-server":
            party = comm
        elif int(entry) == me:
            party = "load generator"
        else:
            party = "other"
        out[int(entry)] = (party, used)
    return out


class CpuWatch:
    """Samples `cpu_seconds` every `interval` seconds in a thread and keeps each process's last
    figures, so a process that exits mid-phase (a PostgreSQL backend replaced when Django's
    CONN_MAX_AGE recycles a connection) still counts what it used up to its last sample."""

    def __init__(self, gunicorn_pgid: int, interval: float = 0.25) -> None:
        self.pgid = gunicorn_pgid
        self.interval = interval
        self.seen: dict[int, tuple[str, float]] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.sample()

    def sample(self) -> dict[int, tuple[str, float]]:
        now = cpu_seconds(self.pgid)
        with self.lock:
            self.seen.update(now)
            return dict(self.seen)

    def __enter__(self) -> CpuWatch:
        self.sample()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()


def _is_pg_backend(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            title = f.read().decode("latin-1")
    except OSError:
        return False
    return "(" in title  # "postgres: user db 127.0.0.1(port) idle" for a connection's backend


def cpu_per_request(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], requests: int
) -> dict[str, float]:
    """Milliseconds of CPU per request, by party, over a phase; `total` excludes `other`. A process
    seen in `before` but not since keeps its figures (CpuWatch samples them until it exits)."""
    if not requests:
        return {}
    parties = ("gunicorn", "postgres", "postgres background", "redis-server", "load generator", "other")
    spent = dict.fromkeys(parties, 0.0)
    for pid, (party, used) in after.items():
        spent[party] += used - before.get(pid, (party, 0.0))[1]
    per = {k: round(v * 1000 / requests, 3) for k, v in spent.items()}
    per["total"] = round(sum(v for k, v in per.items() if k != "other"), 3)
    return per


# --- load -----------------------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection; reopened when the server closes it (sync workers do)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reconnects = 0

    async def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            reused = self.writer is not None
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None
            assert self.writer is not None
            try:
                self.writer.write(head + body)
                await self.writer.drain()
                raw = await self.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                # A kept-alive connection the server had just closed: nothing was read, so the
                # request never ran; sending it again (same Idempotency-Key) is safe.
                await self._close()
                if reused and attempt == 1:
                    self.reconnects += 1
                    continue
                raise
            lines = raw.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
            data = await self.reader.readexactly(int(headers.get("content-length", "0")))
            if headers.get("connection", "").lower() == "close":
                await self._close()
            return status, data
        raise AssertionError("unreachable")


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    requests: int = 0
    items: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    ids: list[int] = field(default_factory=list)
    reconnects: int = 0
    # (seconds into the phase the request was due or sent, its latency), for --timeline
    timeline: list[tuple[float, float]] = field(default_factory=list)

    def per_second(self) -> list[str]:
        """One line per second of the phase: requests due in it, their p50 / p99 / max latency."""
        buckets: dict[int, list[float]] = {}
        for at, latency in self.timeline:
            buckets.setdefault(int(at), []).append(latency)
        lines = []
        for second in sorted(buckets):
            lat = sorted(buckets[second])
            p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(0.99 * len(lat)))]
            lines.append(
                f"  {second:4d} s  {len(lat):5d} requests  p50 {p50 * 1000:7.1f} ms  "
                f"p99 {p99 * 1000:7.1f} ms  max {lat[-1] * 1000:7.1f} ms"
            )
        return lines

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

        return {
            "phase": self.name,
            "seconds": round(self.seconds, 1),
            "requests": self.requests,
            "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0,
            "items": self.items,
            "items_per_s": round(self.items / self.seconds, 1) if self.seconds else 0,
            "p50_ms": round(pct(0.50), 1),
            "p99_ms": round(pct(0.99), 1),
            "mean_ms": round(statistics.fmean(lat) * 1000, 1) if lat else None,
            "statuses": dict(sorted(self.statuses.items())),
            "errors": dict(self.errors),
            "reconnects": self.reconnects,
        }


def bid_json(horizon_start: str, rng: random.Random) -> dict[str, Any]:
    import datetime as dt

    start = dt.datetime.fromisoformat(horizon_start.replace("Z", "+00:00"))
    end = start + dt.timedelta(hours=24)
    return {
        "gpu_models": [MODEL],
        "gpus": rng.randint(1, 8),
        "duration_hours": rng.randint(1, 4),
        "earliest_start": horizon_start,
        "latest_end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "limit_cents_per_gpu_hour": rng.randint(150, 400),
    }


async def run_phase(
    *,
    name: str,
    port: int,
    keys: list[str],
    seconds: float,
    method: str,
    path: str,
    bodies: list[bytes],
    per_request: int,
    rate: float | None = None,
) -> Phase:
    """Each bot sends back to back (closed loop), or with `rate` (requests/s over all bots) on a
    fixed schedule (open loop): then a request's latency counts from when it was due, so a
    server that falls behind the schedule is charged for the wait (no coordinated omission)."""
    phase = Phase(name)
    began_at = time.monotonic()
    began_perf = time.perf_counter()
    deadline = began_at + seconds
    interval = len(keys) / rate if rate else 0.0

    async def bot(index: int, key: str) -> None:
        conn = Connection(port)
        rng = random.Random(index)  # noqa: S311 - load shape, not a secret
        due = began_at + (index * interval / len(keys))
        try:
            while time.monotonic() < deadline:
                if rate:
                    if due >= deadline:
                        break
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                body = bodies[rng.randrange(len(bodies))] if bodies else b""
                head = (
                    f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
                    f"Idempotency-Key: {uuid.uuid4().hex}\r\nContent-Type: application/json\r\n"
                    f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode()
                started = time.perf_counter()
                if rate:
                    started -= time.monotonic() - due  # late sends count as waiting
                    due += interval
                try:
                    status, data = await conn.request(head, body)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    phase.errors[type(exc).__name__] += 1
                    continue
                latency = time.perf_counter() - started
                phase.latencies.append(latency)
                phase.timeline.append((time.perf_counter() - latency - began_perf, latency))
                phase.requests += 1
                phase.statuses[status] += 1
                if status == 201:
                    doc = json.loads(data)
                    found = [b["id"] for b in doc["bids"]] if "bids" in doc else [doc["id"]]
                    phase.ids.extend(found)
                    phase.items += len(found)
                elif status == 200:
                    phase.items += per_request
        finally:
            phase.reconnects += conn.reconnects
            await conn._close()

    began = time.monotonic()
    await asyncio.gather(*(bot(i, k) for i, k in enumerate(keys)))
    phase.seconds = time.monotonic() - began
    return phase


def count_stored(args: argparse.Namespace, ids: list[int]) -> tuple[int, int]:
    """How many of `ids` are stored, and how many bids are stored in all."""
    import psycopg

    with psycopg.connect(f"{args.pg_url}/{args.database}") as conn:
        found = conn.execute("SELECT count(*) FROM marketplace_bid WHERE id = ANY(%s)", [ids]).fetchone()
        total = conn.execute("SELECT count(*) FROM marketplace_bid").fetchone()
    assert found is not None
    assert total is not None
    return int(found[0]), int(total[0])


def bench_one(
    args: argparse.Namespace, seeded: dict[str, Any], worker_class: str, keys: list[str]
) -> dict[str, Any]:
    port = free_port()
    proc = start_gunicorn(args, worker_class, port)
    rng = random.Random(7)  # noqa: S311
    singles = [json.dumps(bid_json(seeded["horizon_start"], rng)).encode() for _ in range(64)]
    batches = [
        json.dumps(
            {"bids": [bid_json(seeded["horizon_start"], rng) for _ in range(args.batch_size)]}
        ).encode()
        for _ in range(4)
    ]
    cpu: dict[str, dict[str, float]] = {}
    watch = CpuWatch(proc.pid)
    try:
        _, before = count_stored(args, [])
        watch.__enter__()
        cpu_start = watch.sample()
        baseline = asyncio.run(
            run_phase(
                name="GET /healthz",
                port=port,
                keys=keys,
                seconds=args.baseline_seconds,
                method="GET",
                path="/healthz",
                bodies=[],
                per_request=1,
            )
        )
        cpu_baseline = watch.sample()
        cpu["baseline"] = cpu_per_request(cpu_start, cpu_baseline, baseline.requests)
        single = asyncio.run(
            run_phase(
                name="POST /api/v1/bids",
                port=port,
                keys=keys,
                seconds=args.single_seconds,
                method="POST",
                path="/api/v1/bids",
                bodies=singles,
                per_request=1,
            )
        )
        cpu_single = watch.sample()
        cpu["single"] = cpu_per_request(cpu_baseline, cpu_single, single.requests)
        paced = [
            asyncio.run(
                run_phase(
                    name=f"POST /api/v1/bids at {rate:g}/s",
                    port=port,
                    keys=keys,
                    seconds=args.paced_seconds,
                    method="POST",
                    path="/api/v1/bids",
                    bodies=singles,
                    per_request=1,
                    rate=rate,
                )
            )
            for rate in args.paced_rate
        ]
        cpu_paced = watch.sample()
        batch = asyncio.run(
            run_phase(
                name=f"POST /api/v1/bids/batch ({args.batch_size})",
                port=port,
                keys=keys[: args.batch_bots],
                seconds=args.batch_seconds,
                method="POST",
                path="/api/v1/bids/batch",
                bodies=batches,
                per_request=args.batch_size,
            )
        )
        cpu["batch"] = cpu_per_request(cpu_paced, watch.sample(), batch.items)
    finally:
        watch.__exit__()
        stop(proc)
    acked = single.ids + [i for p in paced for i in p.ids] + batch.ids
    found, after = count_stored(args, acked)
    result = {
        "worker_class": worker_class,
        "workers": args.workers,
        "threads": args.threads if worker_class == "gthread" else 1,
        "baseline": baseline.summary(),
        "single": single.summary(),
        "paced": [p.summary() for p in paced],
        "timelines": {p.name: p.per_second() for p in (single, *paced)} if args.timeline else {},
        "batch": batch.summary(),
        # CPU milliseconds per request (per bid for batches) by party; `total` is what one
        # request costs this machine, so `cores x 1000 / total` is the rate its cores could
        # sustain if nothing else ran.
        "cpu_ms": cpu,
        "single_capacity_per_s": _capacity(cpu.get("single", {})),
        "batch_capacity_per_s": _capacity(cpu.get("batch", {})),
        "acknowledged_bids": len(acked),
        "distinct_acknowledged": len(set(acked)),
        "lost_bids": len(set(acked)) - found,
        "unacknowledged_stored": (after - before) - len(set(acked)),
        # Rates, not counts: the phases may run for different lengths.
        "single_vs_baseline": _ratio(single.items, single.seconds, baseline.requests, baseline.seconds),
        "batch_bids_vs_baseline": _ratio(batch.items, batch.seconds, baseline.requests, baseline.seconds),
    }
    report(result)
    return result


def _capacity(per: dict[str, float]) -> float | None:
    total = per.get("total")
    return round((os.cpu_count() or 1) * 1000 / total, 1) if total else None


def _ratio(items: int, seconds: float, base: int, base_seconds: float) -> float | None:
    if not (seconds and base and base_seconds):
        return None
    return round((items / seconds) / (base / base_seconds), 3)


def report(r: dict[str, Any]) -> None:
    print(f"\n== gunicorn -w {r['workers']} -k {r['worker_class']} (threads {r['threads']}) ==")  # noqa: T201
    for p in (r["baseline"], r["single"], *r["paced"], r["batch"]):
        print(  # noqa: T201
            f"{p['phase']:<34} {p['requests_per_s']:>8} req/s {p['items_per_s']:>9} items/s "
            f"p50 {p['p50_ms']:>7} ms  p99 {p['p99_ms']:>7} ms  statuses {p['statuses']} "
            f"errors {p['errors']} reconnects {p['reconnects']}"
        )
    for name, lines in r["timelines"].items():
        print(f"{name}, second by second:", *lines, sep="\n")  # noqa: T201
    print(  # noqa: T201
        f"acknowledged bids {r['acknowledged_bids']} (distinct {r['distinct_acknowledged']}), "
        f"lost {r['lost_bids']}, stored without acknowledgement {r['unacknowledged_stored']}; "
        f"single bids/s over healthz req/s: {r['single_vs_baseline']}, "
        f"batched bids/s over healthz req/s: {r['batch_bids_vs_baseline']}"
    )
    for key, unit in (("baseline", "request"), ("single", "bid"), ("batch", "bid in a batch")):
        per = r["cpu_ms"].get(key, {})
        parts = ", ".join(f"{k} {v}" for k, v in per.items() if k not in {"total", "other"})
        print(  # noqa: T201
            f"CPU ms per {unit} ({key}): {parts}; total {per.get('total')} "
            f"(other processes: {per.get('other')})"
        )
    print(  # noqa: T201
        f"what {os.cpu_count()} idle CPUs would sustain at that CPU cost: single bids "
        f"{r['single_capacity_per_s']}/s, batched bids {r['batch_capacity_per_s']}/s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker-class", choices=["sync", "gthread", "both"], default="both")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument("--bots", type=int, default=50)
    parser.add_argument("--batch-bots", type=int, default=50, help="bots sending batches at once")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--baseline-seconds", type=float, default=15)
    parser.add_argument("--single-seconds", type=float, default=60)
    parser.add_argument("--batch-seconds", type=float, default=60)
    parser.add_argument(
        "--paced-rate",
        type=float,
        nargs="+",
        default=[300, 150],
        help="single bids/s offered in the open-loop phases (one phase per rate)",
    )
    parser.add_argument("--paced-seconds", type=float, default=20)
    parser.add_argument(
        "--timeline", action="store_true", help="print each second's latency in the single-bid phases"
    )
    parser.add_argument(
        "--pg-url", default=os.environ.get("BENCH_PG_URL", "postgres://postgres:postgres@127.0.0.1:5432")
    )
    parser.add_argument("--database", default="gridx_bench")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    parser.add_argument("--json-out", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--seed-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seed_only:
        print(json.dumps(seed(args.bots)))  # noqa: T201
        return 0

    started = time.monotonic()
    create_database(args)
    classes = ["sync", "gthread"] if args.worker_class == "both" else [args.worker_class]
    # Each worker class gets its own bot teams: a team's open bids are counted for its limit on
    # every bid, so a class run after another must not start with the other's bids.
    seeded = run_seed(args, args.bots * len(classes))
    print(  # noqa: T201
        f"seeded {len(seeded['keys'])} bot teams with keys, round {seeded['round']} open, "
        f"in {time.monotonic() - started:.0f} s; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    results = []
    for i, worker_class in enumerate(classes):
        load_before = os.getloadavg()[0]
        keys = seeded["keys"][i * args.bots : (i + 1) * args.bots]
        result = bench_one(args, seeded, worker_class, keys)
        result["load_average_before"] = round(load_before, 2)
        result["load_average_after"] = round(os.getloadavg()[0], 2)
        print(  # noqa: T201
            f"load average (1 min) {result['load_average_before']} before, "
            f"{result['load_average_after']} after, on {os.cpu_count()} CPUs"
        )
        results.append(result)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    ok = all(r["lost_bids"] == 0 and r["unacknowledged_stored"] == 0 for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
