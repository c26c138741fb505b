"""Fixtures for the metering server: a seller host with two declared GPUs, a lease on them, and
the real agent (fake backend, manual clock) enrolled against the live Django server."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from auctions.models import Lease, LeaseGpu, LeaseSource, Round, RoundStatus
from marketplace.models import Gpu, Host, Team, User
from metering import services
from metering.agent.clock import SimClock
from metering.agent.enroll import enroll
from metering.agent.fake import FakeBackend, Scenario, parse_scenario
from metering.agent.outbox import Outbox
from metering.agent.runner import Runner, Timing
from metering.agent.state import StateDir
from metering.agent.uploader import Uploader
from tests.agent.conftest import GPU_A, GPU_B, START_WALL, scenario_dict
from tests.conftest import ensure_gpu_catalogue
from tests.factories import (
    BidFactory,
    ClusterFactory,
    GpuFactory,
    HostFactory,
    OfferFactory,
    TeamFactory,
    UserFactory,
)

START = dt.datetime.fromtimestamp(START_WALL, dt.UTC)  # 2026-01-01T00:00:00Z, the scenario's origin


@dataclass
class Seller:
    team: Team
    owner: User
    host: Host
    gpus: list[Gpu]


@pytest.fixture
def seller(db: None) -> Seller:
    ensure_gpu_catalogue()
    team = TeamFactory(name="Sellco", slug="sellco")
    cluster = ClusterFactory(team=team, name="main")
    host = HostFactory(cluster=cluster, hostname="gpu-01")
    gpus = [GpuFactory(host=host, uuid=GPU_A), GpuFactory(host=host, uuid=GPU_B)]
    return Seller(team=team, owner=UserFactory(), host=host, gpus=gpus)


def make_lease(seller: Seller, start: dt.datetime, end: dt.datetime, gpus: list[Gpu] | None = None) -> Lease:
    """A cleared lease of the seller's GPUs over [start, end), bought by a fresh team."""
    gpus = gpus or seller.gpus
    number = Round.objects.count() + 1
    round_ = Round.objects.create(
        number=number,
        status=RoundStatus.CLEARED,
        opened_at=start - dt.timedelta(hours=2),
        cutoff_at=start - dt.timedelta(hours=1, minutes=number),
        horizon_start=start,
        slot_minutes=60,
        slots=24,
    )
    buyer = TeamFactory()
    bid = BidFactory(team=buyer, gpus=len(gpus), min_gpus=len(gpus))
    offer = OfferFactory(cluster=seller.host.cluster, team=seller.team)
    lease = Lease.objects.create(
        round=round_,
        bid=bid,
        team=buyer,
        gpu_model=gpus[0].gpu_model,
        cluster_code=seller.host.cluster.code,
        gpus=len(gpus),
        start=start,
        end=end,
        payment_cents=1000,
    )
    source = LeaseSource.objects.create(lease=lease, offer=offer, gpus=len(gpus), revenue_cents=900)
    for gpu in gpus:
        LeaseGpu.objects.create(lease=lease, source=source, gpu=gpu, start=start, end=end)
    return lease


@dataclass
class Agent:
    """The agent's parts wired as `gridx-agent run` wires them, on a manual clock."""

    state: StateDir
    scenario: Scenario
    clock: SimClock
    outbox: Outbox
    runner: Runner
    uploader: Uploader
    host_id: str

    def run(self, seconds: float, *, send: bool = True) -> None:
        """Let `seconds` of scenario time pass, sampling on schedule (and uploading after each tick)."""
        for _ in range(round(seconds / self.runner.timing.sample_seconds)):
            self.clock.advance(self.runner.timing.sample_seconds)
            self.runner.tick()
            if send:
                self.uploader.drain()


@pytest.fixture
def make_agent(tmp_path: Path, live_server: Any, seller: Seller) -> Iterator[Any]:
    opened: list[Outbox] = []

    def make(faults: list[dict[str, Any]] | None = None, *, url: str | None = None) -> Agent:
        issued = services.enrolment_token_create(team=seller.team, actor=seller.owner, host_id=seller.host.pk)
        scenario = parse_scenario(scenario_dict(faults))
        clock = SimClock(start_wall=START_WALL, wall_steps=scenario.wall_steps())
        backend = FakeBackend(scenario, clock)
        state = StateDir(tmp_path / f"state-{len(opened)}")
        server = url or live_server.url
        done = enroll(
            state=state, server_url=server, token=issued.token, gpus=backend.inventory(), backend="fake"
        )
        outbox = Outbox(state.outbox_path)
        opened.append(outbox)
        runner = Runner(
            backend=backend,
            clock=clock,
            outbox=outbox,
            host_id=done.host_id,
            uuids=list(done.gpu_uuids),
            timing=Timing(),
        )
        uploader = Uploader(
            outbox=outbox, server_url=server, host_id=done.host_id, private_key=state.load_key()
        )
        runner.tick()  # the first sample: the baseline at scenario time 0
        return Agent(state, scenario, clock, outbox, runner, uploader, done.host_id)

    yield make
    for outbox in opened:
        outbox.close()


__all__ = ["GPU_A", "GPU_B", "START", "scenario_dict"]
