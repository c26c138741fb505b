"""`manage.py metering_bench`: ingestion speed through the real reports endpoint into PostgreSQL.

Signed envelopes are posted with Django's test client (the whole request path: middleware, the
view, signature verification, parsing, the chain checks, one transaction per envelope), first with
the production insert (one COPY per envelope), then, in the same run and on the same data, with a
baseline that inserts each report with its own ORM `create()`.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import connection
from django.test import Client

from marketplace.models import Cluster, Gpu, GpuModel, Host, Team
from metering import services
from metering.agent.protocol import (
    ENROLL_PATH,
    GENESIS_HASH,
    REPORTS_PATH,
    EnrollRequest,
    Envelope,
    GpuInfo,
    IntervalReport,
    envelope_body,
    envelope_hash,
    parse_envelope,
    parse_envelope_reference,
    public_key_b64,
    signature_headers,
)
from metering.models import IntervalReport as StoredReport

TARGET_PER_SECOND = 20_000  # issue 6: GPU-interval records/s through the batch endpoint on 2 cores


@dataclass(frozen=True)
class Run:
    label: str
    records: int
    envelopes: int
    seconds: float
    began: float = 0.0  # Unix time of the first post, to combine parallel runs
    cpu_seconds: float = 0.0  # this process's CPU while posting (client and server: one process)
    db_cpu_seconds: float | None = None  # the PostgreSQL backend's CPU meanwhile (None: not readable)

    @property
    def per_second(self) -> float:
        return self.records / self.seconds


def _host(gpus: int, tag: str) -> tuple[Host, list[str]]:
    team, _ = Team.objects.get_or_create(name="Bench seller", slug="bench-seller")
    cluster, _ = Cluster.objects.get_or_create(
        team=team, name="bench", defaults={"region": "bench", "interconnect": "infiniband"}
    )
    host = Host.objects.create(cluster=cluster, hostname=f"bench-{tag}-{uuid.uuid4().hex[:8]}")
    model = GpuModel.objects.order_by("id").first()
    if model is None:
        model = GpuModel.objects.create(name="BENCH-GPU", vendor="x", memory_gb=80, display_name="Bench GPU")
    uuids = [f"GPU-{uuid.uuid4()}" for _ in range(gpus)]
    Gpu.objects.bulk_create(Gpu(host=host, gpu_model=model, uuid=u) for u in uuids)
    return host, uuids


def _bodies(agent_id: str, uuids: list[str], envelopes: int, per_envelope: int) -> list[bytes]:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    bodies, prev, minute = [], GENESIS_HASH, 0
    for seq in range(1, envelopes + 1):
        reports: list[IntervalReport] = []
        while len(reports) < per_envelope:
            t = start + dt.timedelta(minutes=minute)
            for u in uuids:
                reports.append(
                    IntervalReport(u, t, t + dt.timedelta(seconds=60), 60.0, True, True, 63.5, 99.0,
                                   61_000_000_000, 41_999_913, 699_998, (), 0, 1, 12, 0, 0.0)
                )  # fmt: skip
            minute += 1
        body = envelope_body(
            host_id=agent_id,
            seq=seq,
            prev_hash=prev,
            agent_version="0.1.0",
            created_at=start,
            reports=reports,
        )
        prev = envelope_hash(body)
        bodies.append(body)
    return bodies


@contextmanager
def _naive_inserts() -> Iterator[None]:
    original = services._reports_insert

    def naive(envelope_id: int, env: Envelope, gpu_ids: dict[str, int]) -> None:
        services.report_ingest_naive(envelope_id=envelope_id, env=env)

    services._reports_insert = naive
    try:
        yield
    finally:
        services._reports_insert = original


def _run(label: str, *, gpus: int, envelopes: int, per_envelope: int) -> Run:
    host, uuids = _host(gpus, label)
    token = services.enrolment_token_create(team=host.cluster.team, actor=None, host_id=host.pk).token
    key = Ed25519PrivateKey.generate()
    client = Client()
    infos = tuple(GpuInfo(u, "bench", 80 * 2**30, None, "00000000:00:00.0", "550") for u in uuids)
    request = EnrollRequest(token, public_key_b64(key), host.hostname, "0.1.0", infos)
    answer = client.post(ENROLL_PATH, data=request.to_json(), content_type="application/json")
    if answer.status_code != 201:
        raise RuntimeError(f"bench enrolment refused: {answer.content!r}")
    agent_id = answer.json()["host_id"]
    bodies = _bodies(agent_id, uuids, envelopes, per_envelope)
    records = 0
    backend = _backend_pid()
    db_cpu = _process_cpu(backend)
    began_unix = time.time()
    cpu = time.process_time()
    began = time.perf_counter()
    for body in bodies:
        headers = signature_headers(key, agent_id, int(time.time()), body)
        extra = {k: v for k, v in headers.items() if k != "Content-Type"}
        answer = client.post(REPORTS_PATH, data=body, content_type="application/json", headers=extra)
        if answer.status_code != 200:
            raise RuntimeError(f"bench envelope refused: {answer.content!r}")
        records += body.count(b'"gpu_uuid"')
    seconds = time.perf_counter() - began
    cpu_seconds = time.process_time() - cpu
    db_cpu_after = _process_cpu(backend)
    db_cpu_seconds = None if db_cpu is None or db_cpu_after is None else db_cpu_after - db_cpu
    stored = StoredReport.objects.filter(gpu__host=host).count()
    if stored != records:
        raise RuntimeError(f"{records} records posted but {stored} stored")
    return Run(label, records, len(bodies), seconds, began_unix, cpu_seconds, db_cpu_seconds)


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a local process (the PostgreSQL backend), None if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # another machine's database, or no /proc
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _parse_rates(bodies: list[bytes]) -> tuple[float, float]:
    """Reports parsed per CPU second by parse_envelope and by its reference definition (best of 3)."""
    reports = sum(len(parse_envelope(b).reports) for b in bodies)
    rates = []
    for parse in (parse_envelope, parse_envelope_reference):
        best = float("inf")
        for _ in range(3):
            cpu = time.process_time()
            for body in bodies:
                parse(body)
            best = min(best, time.process_time() - cpu)
        rates.append(reports / best)
    return rates[0], rates[1]


def _run_child(args: tuple[str, int, int, int]) -> Run:
    connection.close()  # a forked child must not share the parent's socket
    label, gpus, envelopes, per_envelope = args
    return _run(label, gpus=gpus, envelopes=envelopes, per_envelope=per_envelope)


def _parallel(label: str, *, workers: int, gpus: int, envelopes: int, per_envelope: int) -> Run:
    """`workers` processes, each posting its own host's chain: what a multi-worker server does."""
    if workers == 1:
        return _run(label, gpus=gpus, envelopes=envelopes, per_envelope=per_envelope)
    connection.close()
    jobs = [(f"{label}{i}", gpus, max(1, envelopes // workers), per_envelope) for i in range(workers)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        runs = pool.map(_run_child, jobs)
    began = min(r.began for r in runs)
    ended = max(r.began + r.seconds for r in runs)
    return Run(label, sum(r.records for r in runs), sum(r.envelopes for r in runs), ended - began, began)


def bench(*, records: int, per_envelope: int, workers: int, out: Callable[[str], None]) -> list[Run]:
    """Post `records` reports in envelopes of `per_envelope`, fast path then baseline; print figures."""
    if connection.vendor != "postgresql":
        raise RuntimeError(
            "the metering benchmark measures PostgreSQL: set DATABASE_URL to a postgres:// URL"
        )
    gpus = 8
    envelopes = max(1, records // per_envelope)
    out(
        f"ingesting {envelopes} envelopes x {per_envelope} reports (8 GPUs) through POST {REPORTS_PATH}, "
        f"{workers} worker process(es), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    _run("warmup", gpus=gpus, envelopes=2, per_envelope=per_envelope)
    fast_parse, reference_parse = _parse_rates(
        _bodies("h_bench", [f"GPU-{uuid.uuid4()}" for _ in range(gpus)], 10, per_envelope)
    )
    single = _run("single", gpus=gpus, envelopes=max(1, envelopes // 2), per_envelope=per_envelope)
    cpu_per_record = single.cpu_seconds / single.records
    fast = _parallel("copy", workers=workers, gpus=gpus, envelopes=envelopes, per_envelope=per_envelope)
    small = _parallel(
        "small",
        workers=workers,
        gpus=gpus,
        envelopes=max(1, envelopes * per_envelope // 8 // 10),
        per_envelope=8,
    )
    with _naive_inserts():
        naive = _parallel(
            "naive", workers=workers, gpus=gpus, envelopes=max(1, envelopes // 4), per_envelope=per_envelope
        )
    for run, what in (
        (single, f"batch endpoint, COPY, one process ({per_envelope}/envelope)"),
        (fast, f"batch endpoint, COPY, {workers} processes ({per_envelope}/envelope)"),
        (small, f"batch endpoint, live agent envelopes, {workers} processes (8/envelope)"),
        (naive, f"baseline: same endpoint, one ORM INSERT per report, {workers} processes"),
    ):
        out(
            f"  {what:<76} {run.per_second:>9,.0f} records/s"
            f"  ({run.records} records, {run.envelopes / run.seconds:,.1f} envelopes/s)"
        )
    ratio = fast.per_second / naive.per_second
    out(f"  speed-up over the baseline: {ratio:.1f}x")
    out(
        f"  parse_envelope: {fast_parse:,.0f} reports per CPU second; its reference definition "
        f"{reference_parse:,.0f} (same run): {fast_parse / reference_parse:.1f}x"
    )
    out(f"  CPU per record, one process: web process (test client included) {cpu_per_record * 1e6:.1f} us")
    if single.db_cpu_seconds is not None:
        # What the records cost in CPU, whatever else the machine was doing: the ceiling of an idle
        # machine with this many cores, before the WAL writer, checkpoints and the HTTP server.
        db_per_record = single.db_cpu_seconds / single.records
        total = cpu_per_record + db_per_record
        out(
            f"  + PostgreSQL backend {db_per_record * 1e6:.1f} us = {total * 1e6:.1f} us: "
            f"{os.cpu_count()} idle cores could ingest about {(os.cpu_count() or 1) / total:,.0f} records/s"
        )
    met = "met" if fast.per_second >= TARGET_PER_SECOND else "NOT met"
    out(
        f"  target {TARGET_PER_SECOND:,} records/s with {workers} processes: {met} in this run "
        f"({fast.per_second:,.0f}/s; load average now {os.getloadavg()[0]:.1f})"
    )
    return [single, fast, small, naive]
