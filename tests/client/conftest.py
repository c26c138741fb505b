"""A live server with an open round, a seller's offer and a buyer's API key, for the client's tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from auctions import services as auctions
from auctions.models import Round
from gridx_client import BidRequest, GridxClient
from marketplace import services as market
from marketplace.models import ApiKey, Offer, Scope
from marketplace.specs import OfferSpec
from tests.conftest import Side

H = dt.timedelta(hours=1)
BOT_SCOPES = [Scope.MARKET_READ, Scope.BIDS_WRITE, Scope.OFFERS_WRITE, Scope.WEBHOOKS_WRITE]


@dataclass
class LiveMarket:
    url: str
    round: Round
    offer: Offer
    buyer: Side
    seller: Side
    key: ApiKey
    raw_key: str
    seller_raw_key: str

    @property
    def start(self) -> dt.datetime:
        return self.round.horizon_start


def api_key(side: Side, *, name: str = "bot", **options: object) -> tuple[ApiKey, str]:
    return market.api_key_create(team=side.team, actor=None, name=name, scopes=BOT_SCOPES, **options)  # type: ignore[arg-type]


@pytest.fixture
def live_market(live_server, acme: Side, beta: Side) -> LiveMarket:
    """Acme offers its 16 H100s for 24 h at 180c in the open round; Beta holds a bot's key."""
    round_ = auctions.round_open()
    start = round_.horizon_start
    offer = market.offer_post(
        team=acme.team,
        actor=acme.trader,
        spec=OfferSpec(
            cluster_id=acme.cluster.pk,
            gpu_model="H100-SXM-80GB",
            gpus=16,
            start=start,
            end=start + 24 * H,
            reserve_cents_per_gpu_hour=180,
        ),
    )
    key, raw = api_key(beta)
    _, seller_raw = api_key(acme, name="seller bot")
    return LiveMarket(
        url=live_server.url,
        round=round_,
        offer=offer,
        buyer=beta,
        seller=acme,
        key=key,
        raw_key=raw,
        seller_raw_key=seller_raw,
    )


class CountingTransport(httpx.BaseTransport):
    """The real transport, recording every request and the status it got."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: list[httpx.Request] = []
        self.statuses: list[int] = []
        self.retry_afters: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self.inner.handle_request(request)
        self.statuses.append(response.status_code)
        self.retry_afters.append(response.headers.get("Retry-After"))
        return response

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def transport() -> CountingTransport:
    return CountingTransport()


@pytest.fixture
def client(live_market: LiveMarket, transport: CountingTransport) -> Iterator[GridxClient]:
    with GridxClient(
        live_market.url,
        live_market.raw_key,
        timeout=30,
        max_retries=3,
        backoff_base=0.01,
        transport=transport,
    ) as c:
        yield c


def a_bid(start: dt.datetime, **changes: object) -> BidRequest:
    base: dict[str, object] = {
        "gpu_models": ["H100-SXM-80GB"],
        "gpus": 8,
        "duration_hours": 4,
        "earliest_start": start,
        "latest_end": start + 12 * H,
        "limit_cents_per_gpu_hour": 250,
    }
    base.update(changes)
    return BidRequest(**base)  # type: ignore[arg-type]
