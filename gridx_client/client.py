"""`GridxClient`: the Gridx REST API (/api/v1) for bidding bots, on httpx, with no Django.

Every write carries an Idempotency-Key: a fresh uuid4 per logical call, reused by each of its
retries, so a retry after a lost answer gets the first answer back and can never place a bid
twice. Retries (exponential backoff with jitter) happen on connection errors, 429 (after the
server's Retry-After) and 5xx; any other 4xx is raised at once as a `GridxError` subclass.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import httpx

from . import errors
from .types import (
    ApiKeyInfo,
    Bid,
    BidRequest,
    Cluster,
    GpuModel,
    KillResult,
    Lease,
    Offer,
    OfferRequest,
    PlacedBatch,
    PlacedBid,
    Preview,
    PricePoint,
    Round,
    WebhookDelivery,
    WebhookEndpoint,
    build,
    format_time,
)

T = TypeVar("T")
API_PREFIX = "/api/v1"
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Connection failures where the request surely never reached the server: safe to retry any call.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class GridxClient:
    """A team's API key talking to one Gridx server. Use it as a context manager, or `close()` it.

    `max_retries` counts retries after the first attempt; `max_retry_after` bounds how long a 429
    may make a call wait (longer waits are raised as `RateLimited` for the bot to decide).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        team: str | None = None,
        backoff_base: float = 0.25,
        backoff_max: float = 8.0,
        max_retry_after: float = 65.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        root = base_url.rstrip("/")
        if not root.endswith(API_PREFIX):
            root += API_PREFIX
        headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": "gridx-client/1",
        }
        if team:
            headers["Gridx-Team"] = team
        self._http = httpx.Client(base_url=root + "/", headers=headers, timeout=timeout, transport=transport)
        self.api_key_prefix = api_key.split("_", 2)[1] if api_key.count("_") >= 2 else ""
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        self.retries = 0  # retries made over this client's life, for a bot's own metrics

    def __enter__(self) -> GridxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- transport ------------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        # "Equal jitter": half the exponential step is guaranteed, half random, so many bots that
        # failed together do not come back together.
        step = min(self.backoff_max, self.backoff_base * 2.0**attempt)
        return step / 2 + random.uniform(0, step / 2)  # noqa: S311 - jitter, not a secret

    def _send(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        retry_unsent_only: bool = False,
    ) -> httpx.Response:
        """Send with retries. `retry_unsent_only` is for calls the server does not deduplicate."""
        headers = {IDEMPOTENCY_HEADER: idempotency_key} if idempotency_key else {}
        attempt = 0
        while True:
            try:
                response = self._http.request(method, url, json=body, params=params, headers=headers)
            except httpx.TransportError as exc:
                retryable = isinstance(exc, _NOT_SENT) or not retry_unsent_only
                if attempt >= self.max_retries or not retryable:
                    raise errors.TransportError(0, "transport_error", f"{type(exc).__name__}: {exc}") from exc
                delay = self._backoff(attempt)
            else:
                status = response.status_code
                if attempt >= self.max_retries:
                    return response
                if status == 429:
                    wait = errors.parse_retry_after(response.headers.get("Retry-After"))
                    if wait is not None and wait > self.max_retry_after:
                        return response
                    # Retry-After is whole seconds, rounded down by the server: a little jitter on
                    # top both covers the rounding and spreads bots over the new window.
                    delay = (wait if wait is not None else self._backoff(attempt)) + random.uniform(0, 1.0)  # noqa: S311
                elif status >= 500 and not retry_unsent_only:
                    delay = self._backoff(attempt)
                else:
                    return response
                response.close()
            attempt += 1
            self.retries += 1
            self._sleep(delay)

    def _call(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        idempotent: bool = False,
        idempotency_key: str | None = None,
        retry_unsent_only: bool = False,
    ) -> tuple[Any, httpx.Response]:
        key = (idempotency_key or uuid.uuid4().hex) if idempotent else None
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        response = self._send(
            method,
            url,
            body=body,
            params=clean or None,
            idempotency_key=key,
            retry_unsent_only=retry_unsent_only,
        )
        try:
            data = response.json() if response.content else None
        except ValueError:
            data = None
        if response.status_code >= 400:
            raise errors.error_from_response(response.status_code, data, response.headers)
        return data, response

    def _get(self, url: str, **params: Any) -> Any:
        return self._call("GET", url, params=params)[0]

    def _pages(self, url: str, params: dict[str, Any], build_item: Callable[[Any], T]) -> Iterator[T]:
        """Every item of a cursor-paginated list, following `next` until it is null."""
        next_url: str | None = url
        query: dict[str, Any] | None = params
        while next_url:
            data, _ = self._call("GET", next_url, params=query)
            for item in data["results"]:
                yield build_item(item)
            next_url = data.get("next")
            query = None  # `next` already carries the cursor and the other parameters

    # --- market ---------------------------------------------------------------------------------

    def gpu_models(self) -> list[GpuModel]:
        """The GPU models that can be bid for."""
        return [build(GpuModel, m) for m in self._get("market/gpu-models")]

    def clusters(self) -> list[Cluster]:
        """Every seller cluster's public fields, with GPUs per model."""
        return [build(Cluster, c) for c in self._get("market/clusters")]

    def current_round(self) -> Round | None:
        """The open round, or None in the moment between one round closing and the next opening."""
        try:
            return build(Round, self._get("market/rounds/current"))
        except errors.NotFound:
            return None

    def rounds(self, *, page_size: int = 20) -> Iterator[Round]:
        """Rounds newest first, with their public clearing reports."""
        return self._pages("market/rounds", {"limit": page_size}, lambda r: build(Round, r))

    def round(self, number: int) -> Round:
        return build(Round, self._get(f"market/rounds/{number}"))

    def prices(
        self,
        *,
        gpu_model: str | None = None,
        cluster: str | None = None,
        since: Any = None,
        until: Any = None,
        bucket: str = "slot",
    ) -> list[PricePoint]:
        """The price index, oldest first: cents per GPU-hour per (model, cluster) and slot or day."""
        params = {
            "gpu_model": gpu_model,
            "cluster": cluster,
            "from": format_time(since) if since is not None else None,
            "to": format_time(until) if until is not None else None,
            "bucket": bucket,
        }
        return [build(PricePoint, p) for p in self._get("market/prices", **params)]

    # --- bids -----------------------------------------------------------------------------------

    def place_bid(self, bid: BidRequest, *, idempotency_key: str | None = None) -> PlacedBid:
        """Place a sealed bid. Pass your own `idempotency_key` to make a call safe across restarts."""
        data, response = self._call(
            "POST", "bids", body=bid.to_json(), idempotent=True, idempotency_key=idempotency_key
        )
        return _placed(data, response)

    def place_bids(self, bids: Sequence[BidRequest], *, idempotency_key: str | None = None) -> PlacedBatch:
        """Place up to 1,000 bids in one request: all are stored, or none (a `ValidationError` whose
        `errors` name each bad item as `bids[i].field`)."""
        data, response = self._call(
            "POST",
            "bids/batch",
            body={"bids": [b.to_json() for b in bids]},
            idempotent=True,
            idempotency_key=idempotency_key,
        )
        return PlacedBatch(
            bids=[Bid.from_json(b) for b in data["bids"]],
            round=data.get("round"),
            replayed=response.headers.get(REPLAYED_HEADER) == "true",
        )

    def bids(
        self, *, status: str | None = None, xor_group: str | None = None, page_size: int = 100
    ) -> Iterator[Bid]:
        """All your bids, newest first, across every page."""
        params = {"status": status, "xor_group": xor_group, "limit": page_size}
        return self._pages("bids", {k: v for k, v in params.items() if v is not None}, Bid.from_json)

    def bid(self, bid_id: int) -> Bid:
        """One bid with its outcomes, receipt salt and inclusion proof."""
        return Bid.from_json(self._get(f"bids/{bid_id}"))

    def replace_bid(self, bid_id: int, bid: BidRequest, *, idempotency_key: str | None = None) -> PlacedBid:
        """Replace an open bid atomically: the old one becomes `replaced`, the new one is open."""
        data, response = self._call(
            "POST",
            f"bids/{bid_id}/replace",
            body=bid.to_json(),
            idempotent=True,
            idempotency_key=idempotency_key,
        )
        return _placed(data, response)

    def cancel_bid(self, bid_id: int) -> Bid:
        """Cancel an open bid; cancelling twice is fine (so retrying is too)."""
        return Bid.from_json(self._call("POST", f"bids/{bid_id}/cancel")[0])

    def preview_bid(self, bid: BidRequest) -> Preview:
        """Would this bid have won in the last cleared round, and at what price? Nothing is stored."""
        return build(Preview, self._call("POST", "bids/preview", body=bid.to_json())[0])

    # --- offers ---------------------------------------------------------------------------------

    def post_offer(self, offer: OfferRequest, *, idempotency_key: str | None = None) -> Offer:
        """Offer idle GPUs; `round` on the answer is the first round they take part in."""
        data, _ = self._call(
            "POST", "offers", body=offer.to_json(), idempotent=True, idempotency_key=idempotency_key
        )
        return build(Offer, data)

    def offers(self, *, status: str | None = None, page_size: int = 100) -> Iterator[Offer]:
        params = {"status": status, "limit": page_size}
        return self._pages(
            "offers", {k: v for k, v in params.items() if v is not None}, lambda o: build(Offer, o)
        )

    def offer(self, offer_id: int) -> Offer:
        return build(Offer, self._get(f"offers/{offer_id}"))

    def cancel_offer(self, offer_id: int) -> Offer:
        """Withdraw a live offer; GPUs already leased stay leased."""
        return build(Offer, self._call("DELETE", f"offers/{offer_id}")[0])

    # --- leases ---------------------------------------------------------------------------------

    def leases(self, *, side: str = "bought", page_size: int = 100) -> Iterator[Lease]:
        """Leases you won (`bought`) or sold GPUs into (`sold`), newest first."""
        return self._pages("leases", {"side": side, "limit": page_size}, Lease.from_json)

    def lease(self, lease_id: int) -> Lease:
        """One lease with the GPU UUIDs it runs on."""
        return Lease.from_json(self._get(f"leases/{lease_id}"))

    # --- webhooks -------------------------------------------------------------------------------

    def create_webhook(
        self,
        url: str,
        events: Sequence[str],
        *,
        description: str = "",
        idempotency_key: str | None = None,
    ) -> WebhookEndpoint:
        """Register an endpoint; `secret` on the answer is shown this once: store it."""
        data, _ = self._call(
            "POST",
            "webhooks",
            body={"url": url, "events": list(events), "description": description},
            idempotent=True,
            idempotency_key=idempotency_key,
        )
        return build(WebhookEndpoint, data)

    def webhooks(self) -> list[WebhookEndpoint]:
        return [build(WebhookEndpoint, w) for w in self._get("webhooks")]

    def delete_webhook(self, endpoint_id: int) -> WebhookEndpoint:
        """Disable an endpoint: nothing more is sent to it; its delivery log stays."""
        return build(WebhookEndpoint, self._call("DELETE", f"webhooks/{endpoint_id}")[0])

    def deliveries(self, endpoint_id: int, *, page_size: int = 100) -> Iterator[WebhookDelivery]:
        """An endpoint's delivery log, newest first."""
        return self._pages(
            f"webhooks/{endpoint_id}/deliveries", {"limit": page_size}, WebhookDelivery.from_json
        )

    def delivery(self, delivery_id: int) -> WebhookDelivery:
        """One delivery with its exact body and every attempt."""
        return WebhookDelivery.from_json(self._get(f"webhook-deliveries/{delivery_id}"))

    def replay_delivery(self, delivery_id: int) -> WebhookDelivery:
        """Send a delivery again as a new delivery. Each replay is a new send, so this call is
        retried only when the request surely never reached the server."""
        data, _ = self._call("POST", f"webhook-deliveries/{delivery_id}/replay", retry_unsent_only=True)
        return WebhookDelivery.from_json(data)

    # --- keys -----------------------------------------------------------------------------------

    def keys(self) -> list[ApiKeyInfo]:
        """Your team's API keys (never their secrets)."""
        return [build(ApiKeyInfo, k) for k in self._get("keys")]

    def kill_key(self, key_id: int | None = None) -> KillResult:
        """Kill switch: revoke a key at once and cancel its open bids; this client's key by default.

        After killing its own key this client can make no more calls.
        """
        if key_id is None:
            mine = [k for k in self.keys() if k.prefix == self.api_key_prefix]
            if not mine:
                raise errors.NotFound(404, "not_found", "this client's key is not among the team's keys")
            key_id = mine[0].id
        return build(KillResult, self._call("POST", f"keys/{key_id}/kill")[0])


def _placed(data: Any, response: httpx.Response) -> PlacedBid:
    return PlacedBid(
        bid=Bid.from_json(data),
        round=data.get("round"),
        replayed=response.headers.get(REPLAYED_HEADER) == "true",
    )
