"""The authorisation matrix, kept as data: every endpoint x every kind of caller -> status.

Acme owns every object addressed ({bid}, {offer}, …). Callers:
  own      a trader of Acme, signed in (session)
  other    a trader of Beta, signed in: Acme's objects must not exist for them
  key+     an Acme API key holding exactly the endpoint's scope
  key-     an Acme API key holding every scope but that one
  revoked  an Acme API key with every scope, revoked
  staff    a staff user who belongs to no team (staff rights are not market rights)
  anon     no credentials
A status with `L` must also leak nothing: the response names none of Acme's objects.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.utils import timezone

from marketplace.models import ApiKey, Scope

from .conftest import H, World, bid_body, iso, key_client, session_client

CALLERS = ["own", "other", "key+", "key-", "revoked", "staff", "anon"]

# endpoint                                   scope            own  other key+ key- revoked staff anon
MATRIX = """
GET    /api/v1/market/gpu-models             -                200  200   200  200  401     200   200
GET    /api/v1/market/clusters               -                200  200   200  200  401     200   200
GET    /api/v1/market/rounds                 -                200  200   200  200  401     200   200
GET    /api/v1/market/rounds/current         -                200  200   200  200  401     200   200
GET    /api/v1/market/rounds/{round}         -                200  200   200  200  401     200   200
GET    /api/v1/market/prices                 -                200  200   200  200  401     200   200
GET    /api/v1/bids                          market:read      200  200L  200  403  401     404   401
POST   /api/v1/bids                          bids:write       201  201   201  403  401     404   401
POST   /api/v1/bids/batch                    bids:write       201  201   201  403  401     404   401
POST   /api/v1/bids/preview                  market:read      200  200   200  403  401     404   401
GET    /api/v1/bids/{bid}                    market:read      200  404   200  403  401     404   401
DELETE /api/v1/bids/{bid}                    bids:write       200  404   200  403  401     404   401
POST   /api/v1/bids/{bid}/cancel             bids:write       200  404   200  403  401     404   401
POST   /api/v1/bids/{bid}/replace            bids:write       201  404   201  403  401     404   401
GET    /api/v1/offers                        market:read      200  200L  200  403  401     404   401
POST   /api/v1/offers                        offers:write     201  422   201  403  401     404   401
GET    /api/v1/offers/{offer}                market:read      200  404   200  403  401     404   401
DELETE /api/v1/offers/{offer}                offers:write     200  404   200  403  401     404   401
GET    /api/v1/leases                        market:read      200  200L  200  403  401     404   401
GET    /api/v1/leases/{lease}                market:read      200  200   200  403  401     404   401
GET    /api/v1/clusters                      market:read      200  200L  200  403  401     404   401
POST   /api/v1/clusters                      inventory:write  201  201   201  403  401     404   401
GET    /api/v1/clusters/{cluster}            market:read      200  404   200  403  401     404   401
GET    /api/v1/hosts                         market:read      200  200L  200  403  401     404   401
POST   /api/v1/hosts                         inventory:write  201  422   201  403  401     404   401
GET    /api/v1/gpus                          market:read      200  200L  200  403  401     404   401
POST   /api/v1/gpus                          inventory:write  201  422   201  403  401     404   401
GET    /api/v1/keys                          market:read      200  200L  200  403  401     404   401
POST   /api/v1/keys                          market:read      403  403   403  403  401     404   401
POST   /api/v1/keys/{key}/revoke             market:read      403  403   403  403  401     404   401
POST   /api/v1/keys/{key}/kill               bids:write       200  404   200  403  401     404   401
GET    /api/v1/webhooks                      market:read      200  200L  200  403  401     404   401
POST   /api/v1/webhooks                      webhooks:write   201  201   201  403  401     404   401
GET    /api/v1/webhooks/{endpoint}           market:read      200  404   200  403  401     404   401
DELETE /api/v1/webhooks/{endpoint}           webhooks:write   200  404   200  403  401     404   401
GET    /api/v1/webhooks/{endpoint}/deliveries market:read     200  404   200  403  401     404   401
GET    /api/v1/webhook-deliveries/{delivery} market:read      200  404   200  403  401     404   401
POST   /api/v1/webhook-deliveries/{delivery}/replay webhooks:write 202 404 202 403 401    404   401
GET    /api/v1/metering/leases/{lease}/usage market:read      200  200   200  403  401     404   401
POST   /api/v1/metering/hosts/{host}/tokens  inventory:write  201  404   201  403  401     404   401
POST   /api/v1/metering/hosts/{host}/rotate  inventory:write  201  404   201  403  401     404   401
POST   /api/v1/metering/hosts/{host}/revoke  inventory:write  200  404   200  403  401     404   401
GET    /api/v1/billing/statements            billing:read     403  403   200  403  401     404   401
GET    /api/v1/billing/invoices              billing:read     403  403   200  403  401     404   401
GET    /api/v1/billing/invoices/{invoice}    billing:read     403  403   200  403  401     404   401
GET    /api/v1/billing/payouts               billing:read     403  403   200  403  401     404   401
"""
# Notes on cells that are not the pattern:
# - POST /offers, /hosts, /gpus by `other` name Acme's cluster/host: 422 "your team has no
#   cluster/host with id …", the same answer as for an id that does not exist.
# - GET /leases/{lease} and its usage by `other` are 200: Beta sold that lease's GPUs, so it is
#   Beta's lease too.
# - Keys are created and revoked by a team *owner* signed in; traders (of any team) and keys get 403
#   before any lookup, so the answer reveals nothing about the key.
# - /billing/*: money is need-to-know, so traders (own and other) lack billing:read (403); only
#   owners and billing members hold it (another team's invoice is 404: tests/billing/test_team_api.py).
# - staff: belonging to no team, every team-scoped endpoint answers 404 "you belong to no team".


def _rows() -> list[tuple[str, str, str, dict[str, str]]]:
    rows = []
    for line in MATRIX.strip().splitlines():
        method, path, scope, *cells = line.split()
        assert len(cells) == len(CALLERS), line
        rows.append((method, path, scope, dict(zip(CALLERS, cells, strict=True))))
    return rows


CASES = [
    pytest.param(method, path, scope, caller, expected, id=f"{method} {path} [{caller}]")
    for method, path, scope, cells in _rows()
    for caller, expected in cells.items()
]


def _body(method: str, path: str, world: World) -> dict[str, Any] | None:
    start = world.start
    acme = world.acme
    if method != "POST":
        return None
    bodies: dict[str, dict[str, Any] | None] = {
        "/api/v1/bids": bid_body(start),
        "/api/v1/bids/batch": {"bids": [bid_body(start), bid_body(start, gpus=2, min_gpus=1)]},
        "/api/v1/bids/preview": bid_body(world.lease.start, limit_cents_per_gpu_hour=1000),
        "/api/v1/bids/{bid}/replace": bid_body(start, limit_cents_per_gpu_hour=275),
        "/api/v1/offers": {
            "cluster": acme.cluster.pk,
            "gpu_model": "H100-SXM-80GB",
            "gpus": 4,
            "start": iso(start + 24 * H),
            "end": iso(start + 30 * H),
            "reserve_cents_per_gpu_hour": 210,
        },
        "/api/v1/clusters": {"name": "new-cluster", "region": "eu-west", "interconnect": "infiniband"},
        "/api/v1/hosts": {"cluster": acme.cluster.pk, "hostname": "node-new"},
        "/api/v1/gpus": {
            "host": acme.host.pk,
            "gpu_model": "H100-SXM-80GB",
            "uuid": "GPU-aaaaaaaa-bbbb-cccc-dddd-000000000042",
        },
        "/api/v1/keys": {"name": "another", "scopes": ["market:read"]},
        "/api/v1/webhooks": {"url": "http://127.0.0.1:9/other", "events": ["bid.lost"]},
    }
    return bodies.get(path)


def _client(caller: str, scope: str, world: World):
    from rest_framework.test import APIClient

    acme, beta = world.acme, world.beta
    if caller == "own":
        return session_client(acme.trader)
    if caller == "other":
        return session_client(beta.trader)
    if caller == "staff":
        return session_client(world.staff)
    if caller == "anon":
        return APIClient()
    scopes = list(Scope.values)
    if caller == "key+":
        scopes = [scope] if scope != "-" else ["billing:read"]
    elif caller == "key-":
        scopes = [s for s in Scope.values if s != scope]
    raw = world.key_with(scopes, name=caller)
    if caller == "revoked":
        ApiKey.objects.filter(prefix=raw.split("_")[1]).update(revoked_at=timezone.now())
    return key_client(raw)


def _fill(path: str, world: World) -> str:
    values = {
        "round": world.round.number - 1,
        "bid": world.open_bid.pk,
        "offer": world.offer.pk,
        "lease": world.lease.pk,
        "cluster": world.acme.cluster.pk,
        "key": world.target_key.pk,
        "endpoint": world.endpoint.pk,
        "delivery": world.delivery.pk,
        "host": world.acme.host.pk,
        "invoice": _acme_invoice(world) if "{invoice}" in path else 0,
    }
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]), path)


def _acme_invoice(world: World) -> int:
    """An invoice of Acme's (made in the cell's savepoint, so rolled back with it)."""
    import datetime as dt

    from billing.models import Invoice

    day = world.start.date()
    invoice, _ = Invoice.objects.get_or_create(
        team=world.acme.team,
        currency="usd",
        period_start=day,
        defaults={"period_end": day + dt.timedelta(days=1), "amount_cents": 1234},
    )
    return invoice.pk


def _acme_ids(world: World) -> set[int]:
    return {
        world.open_bid.pk,
        world.won_bid.pk,
        world.offer.pk,
        world.lease.pk,
        world.acme.cluster.pk,
        world.acme.host.pk,
        world.target_key.pk,
        world.endpoint.pk,
    }


@pytest.fixture
def world(shared_world, db):
    # `db` opens a savepoint inside the module's world: each cell's writes are rolled back.
    return shared_world


@pytest.mark.parametrize(("method", "path", "scope", "caller", "expected"), CASES)
def test_authorisation_cell(world, method, path, scope, caller, expected):
    client = _client(caller, scope, world)
    url = _fill(path, world)
    body = _body(method, path, world)
    response = getattr(client, method.lower())(url, data=body, format="json")
    status = int(expected.rstrip("L"))
    assert response.status_code == status, (url, caller, response.content[:500])
    if status >= 400:
        assert response["Content-Type"].startswith("application/problem+json")
        assert response.json()["status"] == status and response.json()["code"]
    if expected.endswith("L"):
        rows = response.json()
        rows = rows["results"] if isinstance(rows, dict) else rows
        leaked = {row["id"] for row in rows} & _acme_ids(world)
        # Ids of different tables may collide; what matters is that no row is Acme's.
        assert all(row.get("team", "beta") != "acme" for row in rows)
        if path == "/api/v1/bids":
            assert not leaked & {world.open_bid.pk, world.won_bid.pk}
        if path == "/api/v1/offers":
            assert world.offer.pk not in leaked
        if path in {"/api/v1/clusters", "/api/v1/hosts", "/api/v1/keys", "/api/v1/webhooks"}:
            assert all(row["id"] not in _own_ids_of(path, world) for row in rows)


def _own_ids_of(path: str, world: World) -> set[int]:
    return {
        "/api/v1/clusters": {world.acme.cluster.pk},
        "/api/v1/hosts": {world.acme.host.pk},
        "/api/v1/keys": {world.target_key.pk},
        "/api/v1/webhooks": {world.endpoint.pk},
    }[path]


def test_matrix_covers_every_api_route():
    """A new endpoint must get its row: the matrix lists every route under /api/v1/."""
    from django.urls import get_resolver

    listed = {(path.replace("{", "<").replace("}", ">")) for _m, path, _s, _c in _rows()}
    routes = set()

    def walk(patterns, prefix=""):
        for p in patterns:
            if hasattr(p, "url_patterns"):
                walk(p.url_patterns, prefix + str(p.pattern))
            else:
                routes.add("/" + prefix + str(p.pattern))

    walk(get_resolver().url_patterns)
    api_routes = {
        re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "<" + _NAMES.get(m.group(1), m.group(1)) + ">", r)
        for r in routes
        # The agent's enroll/reports authenticate by token and signature (tests/metering).
        if r.startswith("/api/v1/") and r not in {"/api/v1/metering/enroll", "/api/v1/metering/reports"}
    }
    assert api_routes <= listed, sorted(api_routes - listed)


_NAMES = {
    "number": "round",
    "bid_id": "bid",
    "offer_id": "offer",
    "lease_id": "lease",
    "cluster_id": "cluster",
    "key_id": "key",
    "endpoint_id": "endpoint",
    "delivery_id": "delivery",
    "host_id": "host",
    "invoice_id": "invoice",
}
