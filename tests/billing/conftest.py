"""Billing fixtures: ledger accounts of two teams and the platform."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from billing.ledger import platform_account, team_account
from billing.models import Account, AccountKind
from tests.factories import TeamFactory


@dataclass
class Books:
    buyer: Account
    seller: Account
    fees: Account
    clearing: Account
    credits: Account


@pytest.fixture
def books(db) -> Books:
    """A buyer's receivable, a seller's payable and the platform's accounts, all in USD."""
    buyer, seller = TeamFactory(), TeamFactory()
    return Books(
        buyer=team_account(team=buyer, kind=AccountKind.RECEIVABLE, currency="usd"),
        seller=team_account(team=seller, kind=AccountKind.PAYABLE, currency="usd"),
        fees=platform_account(kind=AccountKind.FEES, currency="usd"),
        clearing=platform_account(kind=AccountKind.CLEARING, currency="usd"),
        credits=platform_account(kind=AccountKind.CREDITS, currency="usd"),
    )


# --- Leases and verified delivery, written as rows (metering's own tests cover how rows arise) ---

import datetime as dt  # noqa: E402
import itertools  # noqa: E402

from auctions.models import Lease, LeaseGpu, LeaseSource, Round, RoundStatus  # noqa: E402
from marketplace.models import Gpu, GpuModel  # noqa: E402
from metering.models import Envelope, EnvelopeStatus, HostKey, IntervalReport  # noqa: E402
from tests.conftest import ensure_gpu_catalogue  # noqa: E402
from tests.factories import BidFactory, ClusterFactory, GpuFactory, HostFactory, OfferFactory  # noqa: E402

DAY1 = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)  # a Monday, midnight UTC
H = dt.timedelta(hours=1)
_seq = itertools.count(1)


@dataclass
class Deal:
    lease: Lease
    buyer: object
    sellers: list[object]
    gpus: list[Gpu]


def make_deal(
    *, start: dt.datetime, hours: int, payment_cents: int, seller_gpus: tuple[int, ...] = (2,), buyer=None
) -> Deal:
    """A cleared lease over [start, start + hours) served by one source per seller (GPU counts)."""
    ensure_gpu_catalogue()
    end = start + hours * H
    number = Round.objects.count() + 1
    round_ = Round.objects.create(
        number=number,
        status=RoundStatus.CLEARED,
        opened_at=start - 2 * H,
        cutoff_at=start - H - dt.timedelta(minutes=number),
        horizon_start=start,
        slot_minutes=60,
        slots=24,
    )
    buyer = buyer or TeamFactory()
    total = sum(seller_gpus)
    bid = BidFactory(team=buyer, gpus=total, min_gpus=total)
    lease = Lease.objects.create(
        round=round_,
        bid=bid,
        team=buyer,
        gpu_model=GpuModel.objects.get(name="H100-SXM-80GB"),
        gpus=total,
        start=start,
        end=end,
        payment_cents=payment_cents,
    )
    sellers, gpus = [], []
    for n in seller_gpus:
        cluster = ClusterFactory()
        host = HostFactory(cluster=cluster)
        offer = OfferFactory(cluster=cluster, gpus=n)
        mine = GpuFactory.create_batch(n, host=host)
        source = LeaseSource.objects.create(
            lease=lease, offer=offer, gpus=n, revenue_cents=payment_cents * n // total
        )
        for gpu in mine:
            LeaseGpu.objects.create(lease=lease, source=source, gpu=gpu, start=start, end=end)
        sellers.append(cluster.team)
        gpus.extend(mine)
    return Deal(lease=lease, buyer=buyer, sellers=sellers, gpus=gpus)


def deliver(gpus: list[Gpu], start: dt.datetime, end: dt.datetime, *, healthy: bool = True) -> None:
    """Store accepted interval reports saying these GPUs were present (and healthy) over [start, end)."""
    for gpu in gpus:
        key = HostKey.objects.filter(host=gpu.host, status="active").first() or HostKey.objects.create(
            host=gpu.host,
            agent_id=f"agent-{gpu.host_id}",
            public_key=f"{gpu.host_id:044d}",
            enrolled_at=start - 24 * H,
        )
        envelope = Envelope.objects.create(
            key=key, seq=next(_seq), status=EnvelopeStatus.ACCEPTED, received_at=end
        )
        t, position = start, 0
        while t < end:
            step = min(H, end - t)
            IntervalReport.objects.create(
                envelope=envelope,
                position=position,
                gpu=gpu,
                start=t,
                end=t + step,
                monotonic_ms=int(step.total_seconds() * 1000),
                present=True,
                healthy=healthy,
                samples=60,
            )
            t, position = t + step, position + 1


# --- The Stripe stand-in, with the real `stripe` library pointed at it ---------------------------

import json as _json  # noqa: E402
import urllib.request  # noqa: E402

from billing import stripe_gateway  # noqa: E402
from billing.stripe_standin import StandIn  # noqa: E402

WEBHOOK_SECRET = "whsec_test_billing_0123456789"


class Stripe:
    """A running stand-in, the webhooks it signed (in order), and helpers that act as a person."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, str]] = []
        self.server = StandIn(
            webhook_secret=WEBHOOK_SECRET, sink=lambda body, sig: self.sent.append((body, sig))
        )

    def objects(self, kind: str) -> list[dict]:
        return [o for o in self.server.state.objects.values() if o["object"] == kind]

    def act(self, url: str, **params: str) -> dict:
        data = "&".join(f"{k}={v}" for k, v in params.items()).encode()
        with urllib.request.urlopen(urllib.request.Request(url, data=data)) as answer:
            return _json.loads(answer.read())

    def events(self, type_: str) -> list[dict]:
        return [e for e in (_json.loads(b) for b, _ in self.sent) if e["type"] == type_]


@pytest.fixture
def stripe_standin(settings):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    stripe = Stripe()
    stripe.server.start()
    stripe_gateway.install(
        stripe_gateway.StripeGateway(api_key="sk_test_billing", api_base=stripe.server.url)
    )
    yield stripe
    stripe_gateway.install(None)
    stripe.server.stop()
