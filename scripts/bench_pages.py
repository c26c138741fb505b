"""Page speed with a big team: every main page's p50/p95 and query count, against /healthz.

    make bench-pages
    .venv/bin/python scripts/bench_pages.py --rows 10000 --requests 40

What it does, in order:
  1. drops and creates the PostgreSQL database `gridx_bench_pages` (--database) and migrates it;
  2. bulk-inserts a market with --rows bids and --rows leases: a seller team (clusters, hosts, GPUs,
     offers) and a buyer team whose owner also owns the seller team; --rows won bids each with a lease
     (its source, its GPUs, its outcome), --rows / 5 lost and open bids with outcomes, the cleared
     rounds, and a statement per lease grouped into daily invoices;
  3. with Django's test Client signed in as that owner (acting for the buyer team, then the seller
     team for the sell pages), requests each page --requests times after one warm-up request, and
     prints per page: status, p50 and p95 in ms, the queries of one request, and p95 / the p95 of
     /healthz measured in the same run (the framework's floor on this machine, so figures taken under
     different load compare). A page that answers 404 is reported as missing, not as a failure.

The target (issue 8): every page under 200 ms at the 95th percentile with 10,000 bids and leases.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_P95_MS = 200.0


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def configure(args: argparse.Namespace) -> None:
    var = Path(tempfile.mkdtemp(prefix="gridx-bench-pages-"))
    (var / "static").mkdir()  # whitenoise warns about a missing STATIC_ROOT otherwise
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "DATABASE_URL": f"{args.pg_url}/{args.database}",
            "SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
            "DEBUG": "false",
            "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
            "GRIDX_VAR_DIR": str(var),
            "LOG_LEVEL": "WARNING",
            "MAX_OPEN_BIDS": "1000000000",
        }
    )
    os.environ.pop("REDIS_URL", None)  # the locmem cache: the pages' own work, not Redis's
    sys.path.insert(0, str(ROOT))


def create_database(args: argparse.Namespace) -> None:
    import psycopg

    with psycopg.connect(f"{args.pg_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{args.database}"')
    subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"], check=True, cwd=ROOT
    )


def seed(rows: int) -> dict[str, Any]:
    """Bulk-insert the market; returns the user and the ids the pages need."""
    from django.db import transaction

    from auctions.models import BidOutcome, Lease, LeaseGpu, LeaseSource, Outcome, Round, RoundStatus
    from billing.models import Invoice, InvoiceStatus, Statement
    from marketplace import services
    from marketplace.models import (
        Bid,
        BidStatus,
        Cluster,
        Gpu,
        GpuModel,
        Host,
        Offer,
        Role,
        User,
    )

    batch = 2000
    owner = User.objects.create_user(email="owner@bench.gridx.dev", password="bench")  # noqa: S106
    buyer = services.team_create(name="Bench Buyer", owner=owner)
    seller = services.team_create(name="Bench Seller", owner=owner)
    for i in range(3):
        member = User.objects.create_user(email=f"m{i}@bench.gridx.dev", password="bench")  # noqa: S106
        services.member_add(team=buyer, actor=owner, user=member, role=Role.TRADER)
    h100 = GpuModel.objects.get(name="H100-SXM-80GB")
    a100 = GpuModel.objects.get(name="A100-SXM-80GB")
    epoch = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with transaction.atomic():
        clusters = [
            Cluster.objects.create(team=seller, name=f"c{i}", region=region, interconnect="infiniband")
            for i, region in enumerate(["us-west", "us-east", "eu-north", "ap-southeast"])
        ]
        hosts = Host.objects.bulk_create(
            Host(cluster=clusters[i % 4], hostname=f"h{i:03d}") for i in range(16)
        )
        gpus = Gpu.objects.bulk_create(
            Gpu(host=host, gpu_model=h100 if i < 8 else a100, uuid=f"GPU-bench-{i:03d}-{g}")
            for i, host in enumerate(hosts)
            for g in range(8)
        )
        offers = Offer.objects.bulk_create(
            Offer(
                team=seller,
                cluster=clusters[i % 4],
                gpu_model=h100 if i % 2 == 0 else a100,
                gpus=8,
                start=epoch + dt.timedelta(days=i),
                end=epoch + dt.timedelta(days=i + 7),
                reserve_cents_per_gpu_hour=150 + i % 50,
                idempotency_key=f"bench-offer-{i}",
            )
            for i in range(max(rows // 20, 10))
        )
        rounds = Round.objects.bulk_create(
            Round(
                number=n + 1,
                status=RoundStatus.CLEARED,
                opened_at=epoch + dt.timedelta(minutes=15 * n),
                cutoff_at=epoch + dt.timedelta(minutes=15 * n + 15),
                closed_at=epoch + dt.timedelta(minutes=15 * n + 15),
                cleared_at=epoch + dt.timedelta(minutes=15 * n + 16),
                horizon_start=epoch + dt.timedelta(hours=n // 4 + 1),
                slot_minutes=60,
                slots=336,
            )
            for n in range(max(rows // 50, 4))
        )
        # Won bids with leases: 8 GPUs for an hour each, one GPU block per hour so no GPU overlaps.
        per_hour = len(gpus) // 8
        won = Bid.objects.bulk_create(
            (
                Bid(
                    team=buyer,
                    gpus=8,
                    min_gpus=8,
                    duration_hours=1,
                    earliest_start=epoch + dt.timedelta(hours=k // per_hour),
                    latest_end=epoch + dt.timedelta(hours=k // per_hour + 6),
                    limit_cents_per_gpu_hour=250,
                    status=BidStatus.WON,
                    idempotency_key=f"bench-won-{k}",
                    placed_by=owner,
                )
                for k in range(rows)
            ),
            batch_size=batch,
        )
        other = Bid.objects.bulk_create(
            (
                Bid(
                    team=buyer,
                    gpus=4,
                    min_gpus=2,
                    duration_hours=2,
                    earliest_start=epoch + dt.timedelta(days=400),
                    latest_end=epoch + dt.timedelta(days=401),
                    limit_cents_per_gpu_hour=120,
                    status=BidStatus.LOST if k % 2 else BidStatus.OPEN,
                    idempotency_key=f"bench-other-{k}",
                    placed_by=owner,
                )
                for k in range(rows // 5)
            ),
            batch_size=batch,
        )
        through = Bid.gpu_models.through
        through.objects.bulk_create(
            (through(bid_id=b.pk, gpumodel_id=h100.pk) for b in won + other), batch_size=batch
        )
        leases = Lease.objects.bulk_create(
            (
                Lease(
                    round=rounds[k % len(rounds)],
                    bid=bid,
                    team=buyer,
                    gpu_model=h100,
                    cluster_code=f"bench-seller/c{(k % per_hour) % 4}",
                    gpus=8,
                    start=bid.earliest_start,
                    end=bid.earliest_start + dt.timedelta(hours=1),
                    payment_cents=8 * 200,
                )
                for k, bid in enumerate(won)
            ),
            batch_size=batch,
        )
        sources = LeaseSource.objects.bulk_create(
            (
                LeaseSource(lease=lease, offer=offers[k % len(offers)], gpus=8, revenue_cents=1600)
                for k, lease in enumerate(leases)
            ),
            batch_size=batch,
        )
        LeaseGpu.objects.bulk_create(
            (
                LeaseGpu(
                    lease=lease,
                    source=source,
                    gpu=gpus[(k % per_hour) * 8 + g],
                    start=lease.start,
                    end=lease.end,
                )
                for k, (lease, source) in enumerate(zip(leases, sources, strict=True))
                for g in range(8)
            ),
            batch_size=batch,
        )
        BidOutcome.objects.bulk_create(
            (
                BidOutcome(round=lease.round, bid=lease.bid, outcome=Outcome.WON, lease=lease)
                for lease in leases
            ),
            batch_size=batch,
        )
        BidOutcome.objects.bulk_create(
            (
                BidOutcome(
                    round=rounds[k % len(rounds)], bid=bid, outcome=Outcome.LOST, reason="price_too_low"
                )
                for k, bid in enumerate(other)
            ),
            batch_size=batch,
        )
        days = sorted({lease.start.date() for lease in leases})
        invoices = {
            day: invoice
            for day, invoice in zip(
                days,
                Invoice.objects.bulk_create(
                    Invoice(
                        team=buyer,
                        currency="usd",
                        period_start=dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC),
                        period_end=dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) + dt.timedelta(days=1),
                        status=InvoiceStatus.PAID,
                        amount_cents=0,
                    )
                    for day in days
                ),
                strict=True,
            )
        }
        Statement.objects.bulk_create(
            (
                Statement(
                    lease=lease,
                    team=buyer,
                    day=lease.start.date(),
                    period_start=dt.datetime.combine(lease.start.date(), dt.time(), tzinfo=dt.UTC),
                    currency="usd",
                    window_start=lease.start,
                    window_end=lease.end,
                    leased_gpu_seconds=8 * 3600,
                    delivered_gpu_seconds=8 * 3600,
                    lease_payment_cents=1600,
                    lease_gpu_seconds=8 * 3600,
                    charge_cents=1600,
                    fee_cents=160,
                    invoice=invoices[lease.start.date()],
                )
                for lease in leases
            ),
            batch_size=batch,
        )
    return {
        "user": owner,
        "buyer": buyer.pk,
        "seller": seller.pk,
        "lease": leases[len(leases) // 2].pk,
        "bid": won[len(won) // 2].pk,
        "invoice": invoices[days[len(days) // 2]].pk,
        "counts": {
            "bids": Bid.objects.count(),
            "leases": Lease.objects.count(),
            "statements": Statement.objects.count(),
        },
    }


def measure(client: Any, url: str, n: int) -> dict[str, Any]:
    from django.db import connection

    executed: list[str] = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        executed.append(sql)
        return execute(sql, params, many, context)

    # A wrapper rather than the debug cursor: it survives the request closing the connection.
    with connection.execute_wrapper(count):
        status = client.get(url).status_code  # the warm-up, counted for queries only
    if status == 404:
        return {"url": url, "status": 404}
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "url": url,
        "status": status,
        "p50": statistics.median(times),
        "p95": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
        "queries": len(executed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="gridx_bench_pages")
    parser.add_argument("--rows", type=int, default=10_000, help="bids with leases (plus rows/5 other bids)")
    parser.add_argument("--requests", type=int, default=40, help="timed requests per page")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    configure(args)
    create_database(args)
    import django

    django.setup()
    from django.test import Client

    t0 = time.perf_counter()
    world = seed(args.rows)
    say(f"seeded {world['counts']} in {time.perf_counter() - t0:.1f} s")
    with open("/proc/loadavg") as fh:
        say(f"load average: {fh.read().strip()}")
    client = Client()
    client.force_login(world["user"])
    buyer_pages = [
        "/",
        "/buy/",
        "/buy/leases/",
        f"/buy/leases/{world['lease']}/",
        f"/buy/bids/{world['bid']}/",
        "/billing/",
        "/billing/statements/",
        f"/billing/invoices/{world['invoice']}/",
        f"/billing/leases/{world['lease']}/",
        "/developers/",
        "/team/",
    ]
    seller_pages = ["/sell/", "/sell/offers/", "/billing/earnings/"]
    session = client.session
    results = [measure(client, "/healthz", args.requests)]
    from marketplace.web import SESSION_TEAM

    for team, pages in ((world["buyer"], buyer_pages), (world["seller"], seller_pages)):
        session = client.session
        session[SESSION_TEAM] = team
        session.save()
        results += [measure(client, url, args.requests) for url in pages]
    base = results[0]["p95"]
    say(f"\n{'page':34} {'status':>6} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8} {'p95/healthz':>12}")
    slow = []
    for r in results:
        if r["status"] == 404:
            say(f"{r['url']:34} {'missing':>6}")
            continue
        say(
            f"{r['url']:34} {r['status']:>6} {r['p50']:>8.1f} {r['p95']:>8.1f} {r['queries']:>8} "
            f"{r['p95'] / base:>11.1f}x"
        )
        if r["p95"] >= TARGET_P95_MS or r["status"] >= 500:
            slow.append(r["url"])
    with open("/proc/loadavg") as fh:
        say(f"\nload average: {fh.read().strip()}")
    say(
        f"target: p95 < {TARGET_P95_MS:.0f} ms; "
        + (f"missed by {', '.join(slow)}" if slow else "every page met it")
    )
    if not args.keep:
        from django.db import connections

        connections.close_all()
        import psycopg

        with psycopg.connect(f"{args.pg_url}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
