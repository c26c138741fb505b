"""Bids through the API: placing, idempotent retries, batches, errors, risk controls, pagination."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from auctions.verify import verify_receipt
from marketplace import services as market
from marketplace.models import Bid, BidStatus, IdempotencyRecord, Membership, Role

from .conftest import H, bid_body, iso, key_client, session_client


def _key(world, scopes=("market:read", "bids:write"), **extra):
    key, raw = market.api_key_create(team=world.acme.team, actor=None, name="t", scopes=list(scopes), **extra)
    return key, key_client(raw)


def test_a_placed_bid_says_its_round_and_is_sealed_to_its_team(world):
    _, bot = _key(world)
    reply = bot.post("/api/v1/bids", bid_body(world.start), format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert reply.status_code == 201
    body = reply.json()
    assert body["round"] == world.round.number and body["status"] == "open" and len(body["receipt"]) == 64
    bid = Bid.objects.get(pk=body["id"])
    assert bid.team == world.acme.team and bid.api_key is not None
    assert session_client(world.beta.trader).get(f"/api/v1/bids/{bid.pk}").status_code == 404


def test_the_same_idempotency_key_returns_the_first_response_and_another_body_is_409(world):
    _, bot = _key(world)
    first = bot.post("/api/v1/bids", bid_body(world.start), format="json", HTTP_IDEMPOTENCY_KEY="same")
    again = bot.post("/api/v1/bids", bid_body(world.start), format="json", HTTP_IDEMPOTENCY_KEY="same")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    other = bot.post(
        "/api/v1/bids", bid_body(world.start, gpus=5, min_gpus=5), format="json", HTTP_IDEMPOTENCY_KEY="same"
    )
    assert other.status_code == 409
    assert other["Content-Type"] == "application/problem+json"
    assert other.json()["code"] == "idempotency_conflict"
    assert Bid.objects.filter(team=world.acme.team, idempotency_key="same").count() == 1


def test_a_failed_request_does_not_use_up_its_key(world):
    _, bot = _key(world)
    bad = bot.post(
        "/api/v1/bids", bid_body(world.start, gpus=0), format="json", HTTP_IDEMPOTENCY_KEY="retry-me"
    )
    assert bad.status_code == 422
    good = bot.post("/api/v1/bids", bid_body(world.start), format="json", HTTP_IDEMPOTENCY_KEY="retry-me")
    assert good.status_code == 201


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_requests_with_one_key_store_one_bid_and_answer_alike(acme, beta):
    from auctions import services as rounds

    round_ = rounds.round_open()
    start = round_.horizon_start
    _, raw = market.api_key_create(team=acme.team, actor=None, name="race", scopes=["bids:write"])
    barrier = threading.Barrier(20)
    replies: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def place() -> None:
        client = key_client(raw)
        barrier.wait()
        try:
            reply = client.post("/api/v1/bids", bid_body(start), format="json", HTTP_IDEMPOTENCY_KEY="race-1")
            with lock:
                replies.append((reply.status_code, reply.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=place) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(replies) == 20
    assert {status for status, _ in replies} == {201}
    assert all(body == replies[0][1] for _, body in replies)
    assert Bid.objects.filter(team=acme.team).count() == 1
    assert IdempotencyRecord.objects.filter(team=acme.team, key="race-1").count() == 1


def test_a_batch_is_all_or_nothing_with_every_items_errors(world):
    _, bot = _key(world)
    before = Bid.objects.count()
    bids = [
        bid_body(world.start),
        bid_body(world.start, gpus=2, min_gpus=3),
        bid_body(world.start, gpu_models=["NO-SUCH-GPU"], limit_cents_per_gpu_hour=0),
    ]
    reply = bot.post("/api/v1/bids/batch", {"bids": bids}, format="json")
    assert reply.status_code == 422
    fields = {(e["field"], e["code"]) for e in reply.json()["errors"]}
    assert ("bids[1].min_gpus", "min_above_gpus") in fields
    assert ("bids[2].gpu_models[0]", "unknown_model") in fields
    assert ("bids[2].limit_cents_per_gpu_hour", "not_positive") in fields
    assert not any(f.startswith("bids[0]") for f, _ in fields)
    assert Bid.objects.count() == before

    ok = bot.post("/api/v1/bids/batch", {"bids": bids[:1] * 3}, format="json", HTTP_IDEMPOTENCY_KEY="b1")
    assert ok.status_code == 201
    assert len(ok.json()["bids"]) == 3 and ok.json()["round"] == world.round.number
    keys = [b["idempotency_key"] for b in ok.json()["bids"]]
    assert keys == ["b1#0", "b1#1", "b1#2"]


def test_a_batch_over_1000_bids_is_refused_with_a_reason(world):
    _, bot = _key(world)
    reply = bot.post("/api/v1/bids/batch", {"bids": [bid_body(world.start)] * 1001}, format="json")
    assert reply.status_code == 422
    assert reply.json()["errors"][0] == {
        "field": "bids",
        "code": "too_many",
        "message": "a batch holds at most 1000 bids, got 1001; split it",
    }


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"gpus": "8"}, "gpus", "not_an_integer"),
        ({"gpus": 2.5}, "gpus", "not_an_integer"),
        ({"earliest_start": "2026-12-01T10:00:00"}, "earliest_start", "naive_datetime"),
        ({"earliest_start": "tomorrow"}, "earliest_start", "invalid"),
        ({"gpu_models": "H100-SXM-80GB"}, "gpu_models", "not_a_list"),
        ({"limit_cents_per_gpu_hour": 10**9}, "limit_cents_per_gpu_hour", "absurd_price"),
    ],
)
def test_bad_fields_are_named_in_problem_details(world, change, field, code):
    _, bot = _key(world)
    reply = bot.post("/api/v1/bids", bid_body(world.start, **change), format="json")
    assert reply.status_code == 422
    problem = reply.json()
    assert reply["Content-Type"] == "application/problem+json"
    assert problem["type"].endswith(problem["code"]) and problem["status"] == 422
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in problem["errors"]
    ]


def test_malformed_json_is_a_400_problem(world):
    _, bot = _key(world)
    reply = bot.generic("POST", "/api/v1/bids", b"{not json", content_type="application/json")
    assert reply.status_code == 400 and reply.json()["code"] == "parse_error"


def test_the_exposure_cap_limits_a_keys_open_bids(world):
    # 4 GPUs x 2 h x 300 c = 2,400 c per bid; the cap admits two.
    _, bot = _key(world, exposure_cap_cents=5_000)
    assert bot.post("/api/v1/bids", bid_body(world.start), format="json").status_code == 201
    second = bot.post("/api/v1/bids", bid_body(world.start), format="json")
    assert second.status_code == 201
    third = bot.post("/api/v1/bids", bid_body(world.start), format="json")
    assert third.status_code == 422 and third.json()["code"] == "exposure_cap_exceeded"
    # Replacing a bid frees its own exposure first.
    replaced = bot.post(
        f"/api/v1/bids/{second.json()['id']}/replace",
        bid_body(world.start, limit_cents_per_gpu_hour=320),
        format="json",
    )
    assert replaced.status_code == 201


def test_the_kill_switch_revokes_the_key_and_cancels_its_open_bids(world):
    key, bot = _key(world)
    placed = [bot.post("/api/v1/bids", bid_body(world.start), format="json").json()["id"] for _ in range(3)]
    other = (
        session_client(world.acme.trader).post("/api/v1/bids", bid_body(world.start), format="json").json()
    )
    reply = bot.post(f"/api/v1/keys/{key.pk}/kill")
    assert reply.status_code == 200
    assert sorted(reply.json()["cancelled"]) == sorted(placed) and reply.json()["held"] == []
    assert set(Bid.objects.filter(pk__in=placed).values_list("status", flat=True)) == {BidStatus.CANCELLED}
    assert Bid.objects.get(pk=other["id"]).status == BidStatus.OPEN  # a person's bid is not the key's
    after = bot.get("/api/v1/bids")
    assert after.status_code == 401 and after.json()["code"] == "key_revoked"


def test_a_key_over_its_rate_limit_gets_429_with_retry_after(world):
    _, bot = _key(world, rate_limit_per_minute=3)
    assert [bot.get("/api/v1/bids").status_code for _ in range(3)] == [200, 200, 200]
    limited = bot.get("/api/v1/bids")
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited["Retry-After"]) <= 60


def test_expired_and_malformed_keys_are_refused(world):
    _, raw = market.api_key_create(
        team=world.acme.team,
        actor=None,
        name="short",
        scopes=["market:read"],
        expires_at=timezone.now() + dt.timedelta(minutes=5),
    )
    assert key_client(raw).get("/api/v1/bids").status_code == 200
    world_clock_later = timezone.now() + dt.timedelta(minutes=6)
    import time_machine

    with time_machine.travel(world_clock_later, tick=False):
        expired = key_client(raw).get("/api/v1/bids")
    assert expired.status_code == 401 and expired.json()["code"] == "key_expired"
    assert key_client("not-a-key").get("/api/v1/bids").json()["code"] == "bad_api_key"
    assert key_client(raw[:-2] + "xx").get("/api/v1/bids").json()["code"] == "bad_api_key"


def test_cursor_pagination_visits_every_bid_once(world):
    _, bot = _key(world)
    ids = {bot.post("/api/v1/bids", bid_body(world.start), format="json").json()["id"] for _ in range(5)}
    ids.add(world.open_bid.pk)
    ids.add(world.won_bid.pk)
    seen: list[int] = []
    url = "/api/v1/bids?limit=3"
    while url:
        page = bot.get(url).json()
        seen += [b["id"] for b in page["results"]]
        url = page["next"]
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))


def test_a_won_bid_shows_its_outcome_lease_and_a_verifying_inclusion_proof(world):
    _, bot = _key(world)
    detail = bot.get(f"/api/v1/bids/{world.won_bid.pk}").json()
    assert detail["status"] == "won"
    assert detail["outcomes"] == [
        {
            "round": world.round.number - 1,
            "outcome": "won",
            "reason": "",
            "detail": {},
            "lease": world.lease.pk,
        }
    ]
    proof = detail["inclusion_proof"]
    verdict = verify_receipt(
        receipt_document=proof["document"], receipt=proof["receipt"], proof=proof["proof"], root=proof["root"]
    )
    assert verdict.ok, verdict.failures


def test_preview_answers_for_the_last_cleared_round_and_stores_nothing(world):
    _, bot = _key(world)
    before = Bid.objects.count()
    start = world.lease.start
    rich = bot.post(
        "/api/v1/bids/preview", bid_body(start, limit_cents_per_gpu_hour=1000), format="json"
    ).json()
    assert rich["would_win"] is True and rich["round"] == world.round.number - 1
    assert rich["gpus"] == 4 and 0 < rich["payment_cents"] <= 1000 * 4 * 2
    poor = bot.post(
        "/api/v1/bids/preview", bid_body(start, limit_cents_per_gpu_hour=10), format="json"
    ).json()
    assert poor["would_win"] is False and poor["reason"]
    assert Bid.objects.count() == before


def test_session_writes_need_csrf_and_a_named_team_when_several(world):
    trader = world.acme.trader
    refused = session_client(trader, csrf=True).post("/api/v1/bids", bid_body(world.start), format="json")
    assert refused.status_code == 403
    Membership.objects.create(team=world.beta.team, user=trader, role=Role.VIEWER)
    ambiguous = session_client(trader).get("/api/v1/bids")
    assert ambiguous.status_code == 422 and ambiguous.json()["errors"][0]["code"] == "team_required"
    named = session_client(trader, team_slug="beta").get("/api/v1/bids")
    assert named.status_code == 200
    assert (
        session_client(trader, team_slug="beta")
        .post("/api/v1/bids", bid_body(world.start), format="json")
        .status_code
        == 403
    )  # a viewer in beta


def test_offers_leases_and_prices_read_back(world):
    _, bot = _key(world, scopes=["market:read", "offers:write"])
    reply = bot.post(
        "/api/v1/offers",
        {
            "cluster": world.acme.cluster.pk,
            "gpu_model": "H100-SXM-80GB",
            "gpus": 9,
            "start": iso(world.start),
            "end": iso(world.start + 24 * H),
            "reserve_cents_per_gpu_hour": 200,
        },
        format="json",
    )
    # 8 of Acme's 16 GPUs are already offered in that window.
    assert reply.status_code == 422 and reply.json()["code"] == "exceeds_inventory"
    assert reply.json()["errors"][0]["field"] == "gpus"
    leases = bot.get("/api/v1/leases").json()["results"]
    assert [lease["id"] for lease in leases] == [world.lease.pk]
    sold = session_client(world.beta.trader).get("/api/v1/leases?side=sold").json()["results"]
    assert [lease["id"] for lease in sold] == [world.lease.pk]
    prices = bot.get("/api/v1/market/prices?gpu_model=H100-SXM-80GB&bucket=day").json()
    assert prices and all(p["gpu_model"] == "H100-SXM-80GB" for p in prices)
    assert bot.get("/api/v1/market/prices?from=yesterday").status_code == 422
