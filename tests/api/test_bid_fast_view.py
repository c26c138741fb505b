"""`POST /api/v1/bids` answered outside DRF (auctions/api_fast.py): a bot cannot tell which path
answered, every request that is not plainly well-formed is explained by DRF exactly as before, and
the bid path's statements are prepared once per connection."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from auctions import api, api_fast
from billing.models import BillingStanding
from marketplace import services as market
from marketplace.models import Bid, IdempotencyRecord

from .conftest import bid_body, key_client

# What differs between two stored bids whatever path placed them.
PER_BID = {"id", "receipt", "idempotency_key", "created_at"}


@pytest.fixture
def drf_only(monkeypatch):
    """Send every bid POST to BidListApi, as before the fast path existed."""
    monkeypatch.setattr(api_fast, "place_bid", lambda request: None)


@pytest.fixture
def fast_only(monkeypatch):
    """Fail any bid POST that reaches BidListApi: what still succeeds took the fast path."""

    def refuse(self, request):
        raise AssertionError("reached DRF")

    monkeypatch.setattr(api.BidListApi, "post", refuse)


def _bot(world, **extra: Any):
    key, raw = market.api_key_create(
        team=world.acme.team, actor=None, name="bot", scopes=["market:read", "bids:write"], **extra
    )
    return key, key_client(raw)


def _post(bot, body: Any, **headers: str):
    return bot.post("/api/v1/bids", json.dumps(body), content_type="application/json", **headers)


def _comparable(reply) -> tuple[int, dict[str, str], dict[str, Any]]:
    body = {k: v for k, v in reply.json().items() if k not in PER_BID}
    assert int(reply["Content-Length"]) == len(reply.content)
    headers = {h: v for h, v in reply.headers.items() if h != "Content-Length"}
    return reply.status_code, headers, body


def test_a_well_formed_bid_takes_the_fast_path(world, fast_only):
    key, bot = _bot(world)
    reply = _post(bot, bid_body(world.start), HTTP_IDEMPOTENCY_KEY="fast-1")
    assert reply.status_code == 201
    stored = Bid.objects.select_related("api_key").get(pk=reply.json()["id"])
    assert stored.team_id == world.acme.team.pk and stored.api_key == key
    assert stored.idempotency_key == "fast-1" and reply.json()["round"] == world.round.number
    assert sorted(m.name for m in stored.gpu_models.all()) == ["H100-SXM-80GB"]
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_both_paths_answer_a_bid_alike(world, monkeypatch):
    _, bot = _bot(world)
    fast = _post(bot, bid_body(world.start), HTTP_IDEMPOTENCY_KEY="a")
    monkeypatch.setattr(api_fast, "place_bid", lambda request: None)
    slow = _post(bot, bid_body(world.start), HTTP_IDEMPOTENCY_KEY="b")
    assert fast.status_code == slow.status_code == 201
    assert _comparable(fast) == _comparable(slow)  # every header too: the skipped middleware's
    assert fast["X-Frame-Options"] == "DENY" and fast["Allow"] == "GET, POST, HEAD, OPTIONS"
    assert fast.content.count(b" ") == slow.content.count(b" ")  # the same compact rendering


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"gpus": 0}, 422, "invalid_input"),
        ({"min_gpus": 9}, 422, "invalid_input"),
        ({"gpu_models": ["NO-SUCH-GPU"]}, 422, "invalid_input"),
        ({"limit_cents_per_gpu_hour": 10_000_000}, 422, "invalid_input"),
    ],
)
def test_a_rule_broken_by_a_well_formed_bid_is_explained_alike(world, monkeypatch, change, status, code):
    # These pass the reader (plain types) and are refused by the service, on the fast path.
    _, bot = _bot(world)
    fast = _post(bot, bid_body(world.start, **change))
    monkeypatch.setattr(api_fast, "place_bid", lambda request: None)
    slow = _post(bot, bid_body(world.start, **change))
    assert fast.status_code == slow.status_code == status
    assert fast.json() == slow.json() and fast.json()["code"] == code
    assert _comparable(fast)[1] == _comparable(slow)[1]
    assert fast["Content-Type"] == slow["Content-Type"] == "application/problem+json"
    assert not Bid.objects.filter(team=world.acme.team, idempotency_key__startswith="fast").exists()


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"gpus": "8"}, 422, "gpus"),
        ({"colocate": "yes"}, 422, "colocate"),
        ({"earliest_start": "tomorrow"}, 422, "earliest_start"),
        ({"gpu_models": "H100-SXM-80GB"}, 422, "gpu_models"),
    ],
)
def test_a_malformed_bid_goes_to_drf_which_names_the_field(world, body, status, field):
    _, bot = _bot(world)
    reply = _post(bot, bid_body(world.start, **body))
    assert reply.status_code == status
    assert field in {e["field"] for e in reply.json()["errors"]}


def test_refusals_before_the_bid_are_drfs(world):
    key, bot = _bot(world)
    assert _post(key_client("gx_nope_secret"), bid_body(world.start)).json()["code"] == "bad_api_key"
    _, reader = market.api_key_create(team=world.acme.team, actor=None, name="ro", scopes=["market:read"])
    denied = _post(key_client(reader), bid_body(world.start))
    assert denied.status_code == 403 and denied.json()["code"] == "missing_scope"
    nan = bot.post(
        "/api/v1/bids",
        json.dumps(bid_body(world.start)).replace("300", "NaN"),
        content_type="application/json",
    )
    assert nan.status_code == 400  # DRF's strict JSON refuses NaN; the fast path must not accept it
    text = bot.post("/api/v1/bids", "gpus=8", content_type="text/plain")
    assert text.status_code == 415
    market.api_key_revoke(team=world.acme.team, actor=None, key_id=key.pk)
    revoked = _post(bot, bid_body(world.start))
    assert revoked.status_code == 401 and revoked.json()["code"] == "key_revoked"
    assert not Bid.objects.filter(api_key=key).exists()


def test_the_rate_limit_applies_on_the_fast_path(world, fast_only):
    _, bot = _bot(world, rate_limit_per_minute=2)
    assert [_post(bot, bid_body(world.start)).status_code for _ in range(2)] == [201, 201]
    limited = _post(bot, bid_body(world.start))
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert limited["Content-Type"] == "application/problem+json"


def test_a_suspended_team_is_refused_on_the_fast_path(world, fast_only, settings):
    BillingStanding.objects.create(
        team=world.acme.team,
        failing_since=timezone.now() - dt.timedelta(days=settings.BILLING_SUSPEND_AFTER_DAYS + 1),
    )
    _, bot = _bot(world)
    reply = _post(bot, bid_body(world.start))
    assert reply.status_code == 403 and reply.json()["code"] == "billing_suspended"


def test_idempotency_holds_across_both_paths(world, monkeypatch):
    _, bot = _bot(world)
    monkeypatch.setattr(api_fast, "place_bid", lambda request: None)
    first = _post(bot, bid_body(world.start), HTTP_IDEMPOTENCY_KEY="cross")  # DRF stores it
    monkeypatch.undo()
    again = _post(bot, bid_body(world.start), HTTP_IDEMPOTENCY_KEY="cross")  # the fast path replays it
    assert again.status_code == 201 and again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    other = _post(bot, bid_body(world.start, gpus=8), HTTP_IDEMPOTENCY_KEY="cross")
    assert other.status_code == 409
    assert Bid.objects.filter(team=world.acme.team, idempotency_key="cross").count() == 1
    assert IdempotencyRecord.objects.filter(team=world.acme.team, key="cross").count() == 1


def _prepared() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return {row[0] for row in cursor.fetchall()}


def _forget_prepared() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    connection.connection._prepared.clear()  # psycopg's own record of what it prepared


def test_the_bid_path_statements_are_prepared_once_per_connection(world, settings):
    _, bot = _bot(world)
    _forget_prepared()
    before = _prepared()
    for i in range(3):
        assert _post(bot, bid_body(world.start), HTTP_IDEMPOTENCY_KEY=f"p{i}").status_code == 201
    new = _prepared() - before
    # key lookup, idempotency claim and store, team and key lock, book query (with the billing
    # guard), insert (with the open round)
    assert any("FOR NO KEY UPDATE" in s for s in new) and any("unnest" in s for s in new)
    assert len(_prepared()) == len(before | new)
    for i in range(3, 6):  # the same statements again: nothing new is prepared
        assert _post(bot, bid_body(world.start), HTTP_IDEMPOTENCY_KEY=f"p{i}").status_code == 201
    assert _prepared() == before | new


def _statements(bot, body: Any, **headers: str) -> list[str]:
    statements: list[str] = []

    def record(execute, sql, params, many, context):
        if not sql.startswith(("SAVEPOINT", "RELEASE SAVEPOINT")):  # the test's own transaction
            statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        assert _post(bot, body, **headers).status_code == 201
    return statements


@pytest.mark.parametrize("remembered", [True, False])
def test_a_bid_is_five_statements_or_six_with_the_key_lookup(world, fast_only, settings, remembered):
    """Idempotency claim, team and key lock, book query (count, duplicate keys, ids and every
    guard's value), insert (bid, model links and the open round), stored response; plus the key
    lookup when the process does not remember the key. A guard added to BID_GUARDS adds a column
    to the book query, not a round trip."""
    settings.API_KEY_CACHE_SECONDS = 5 if remembered else 0
    _, bot = _bot(world)
    assert _post(bot, bid_body(world.start)).status_code == 201  # the key's last use is now recorded
    statements = _statements(bot, bid_body(world.start), HTTP_IDEMPOTENCY_KEY="count")
    assert len(statements) == (5 if remembered else 6), statements
    assert sum("marketplace_apikey" in s for s in statements) == (1 if remembered else 2)
    assert sum("billing_billingstanding" in s for s in statements) == 1
    assert "billing_billingstanding" in next(s for s in statements if "teamopenbids" in s)


def test_a_key_revoked_while_remembered_places_nothing_and_is_refused_as_drf_refuses_it(world, fast_only):
    key, bot = _bot(world)
    assert _post(bot, bid_body(world.start)).status_code == 201  # the fast path now remembers the key
    before = Bid.objects.count()
    market.api_key_revoke(team=world.acme.team, actor=None, key_id=key.pk)
    for attempt in ("remembered", "looked up again"):
        reply = _post(bot, bid_body(world.start), HTTP_IDEMPOTENCY_KEY=f"after-{attempt}")
        assert reply.status_code == 401 and reply.json()["code"] == "key_revoked", attempt
        assert reply["WWW-Authenticate"] == 'Bearer realm="gridx"'
    assert Bid.objects.count() == before
    assert not IdempotencyRecord.objects.filter(key__startswith="after-").exists()


def test_a_remembered_key_that_expires_places_nothing(world, fast_only):
    import time_machine

    _, bot = _bot(world, expires_at=timezone.now() + dt.timedelta(minutes=5))
    assert _post(bot, bid_body(world.start)).status_code == 201
    before = Bid.objects.count()
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=6), tick=False):
        reply = _post(bot, bid_body(world.start))
    assert reply.status_code == 401 and reply.json()["code"] == "key_expired"
    assert Bid.objects.count() == before


def test_a_key_refused_under_the_lock_is_explained_like_authentication(world):
    """The DRF path too: a key revoked between authentication and the bid's lock is a 401."""
    from marketplace.errors import KeyRefused

    key, _ = _bot(world)
    market.api_key_revoke(team=world.acme.team, actor=None, key_id=key.pk)
    with pytest.raises(KeyRefused) as refused:
        market.bid_place(
            team=world.acme.team, actor=None, spec=_spec(world), idempotency_key="late", api_key=key
        )
    assert refused.value.code == "key_revoked" and key.prefix in refused.value.message
    assert not Bid.objects.filter(idempotency_key="late").exists()


def _until_waiting(n: int) -> None:
    """Return once `n` sessions of the test database wait on a lock (20 s at most)."""
    deadline = time.monotonic() + 20
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
            )
            if int(cursor.fetchone()[0]) >= n:
                return
        assert time.monotonic() < deadline, f"fewer than {n} sessions ever waited on a lock"
        time.sleep(0.02)


def _race(hold: str, params: list[Any], first: tuple[str, Any], second: tuple[str, Any]) -> dict[str, Any]:
    """Hold a lock (`hold`, in a transaction of another connection); start `first` and wait until
    it waits on a lock; start `second` and wait until it waits too; then release the hold and
    return what each returned, by name."""
    from django.db import connections

    holder = connections.create_connection("default")
    holder.set_autocommit(False)
    with holder.cursor() as cursor:
        cursor.execute(hold, params)
    replies: dict[str, Any] = {}
    threads = []
    try:
        for waiting, (name, act) in enumerate((first, second), start=1):
            threads.append(_in_thread(replies, name, act))
            _until_waiting(waiting)
    finally:
        holder.commit()
        holder.close()
    for thread in threads:
        thread.join(timeout=60)
    return replies


def _in_thread(replies: dict[str, Any], name: str, act: Any) -> threading.Thread:
    """Run `act` in a thread of its own (its own database connection); its result in replies[name]."""

    def target() -> None:
        try:
            replies[name] = act()
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    return thread


def _spec(world):
    spec = api.plain_spec(bid_body(world.start))
    assert spec is not None
    return spec


@pytest.mark.django_db(transaction=True)
def test_a_bid_racing_the_kill_switch_is_refused_never_left_open(acme, beta):
    """The kill switch revokes the key (locking its row), waits for bid writers, cancels the key's
    open bids. A bid whose key was checked (and remembered) before the kill, and which reaches its
    lock while the kill is under way, must not be stored after the kill has cancelled the rest."""
    from auctions import services as auction_services
    from marketplace.models import BidStatus

    round_ = auction_services.round_open()
    key, raw = market.api_key_create(team=acme.team, actor=None, name="racer", scopes=["bids:write"])
    assert _post(key_client(raw), bid_body(round_.horizon_start)).status_code == 201  # remembered
    # Another writer holds the bid table, so the kill, once it has revoked the key, waits there.
    replies = _race(
        "LOCK TABLE marketplace_bid IN ROW EXCLUSIVE MODE",
        [],
        ("kill", lambda: auction_services.api_key_kill(team=acme.team, actor=None, key_id=key.pk)),
        ("bid", lambda: _post(key_client(raw), bid_body(round_.horizon_start))),
    )
    assert replies["bid"].status_code == 401 and replies["bid"].json()["code"] == "key_revoked"
    assert len(replies["kill"].cancelled) == 1
    assert not Bid.objects.filter(api_key=key, status=BidStatus.OPEN).exists()


def test_the_book_query_reads_each_guard_value_as_the_guard_itself_reads_it(world, settings):
    from django.db import transaction

    team = world.acme.team
    failing = timezone.now() - dt.timedelta(days=1)
    for standing in (None, failing):
        if standing is not None:
            BillingStanding.objects.create(team=team, failing_since=standing)
        with transaction.atomic():
            book = market._book_for_insert(team, keys=["k"], new=1)
        assert book.guards == [guard.read(team) for guard in market.BID_GUARDS] == [standing]


def test_prepared_statements_can_be_turned_off(world, settings):
    settings.DATABASE_PREPARED_STATEMENTS = False
    _, bot = _bot(world)
    _forget_prepared()
    assert _post(bot, bid_body(world.start), HTTP_IDEMPOTENCY_KEY="off").status_code == 201
    assert _prepared() == set()


def test_a_rate_limit_counter_expires_with_its_window(world):
    from marketplace.api_auth import _redis_client, key_rate_limit, rate_limit_wait

    key, _ = _bot(world, rate_limit_per_minute=1)
    client = _redis_client()
    assert client is not None  # tests run on Redis
    identity, limit = key_rate_limit(key)
    assert limit == 1
    assert rate_limit_wait(identity, limit) is None
    wait = rate_limit_wait(identity, limit)  # the second hit in the window is refused
    assert wait is not None and 0 < wait <= 60
    (counter,) = client.keys(f"*gridx:rl:{identity}:*")
    assert int(client.get(counter)) == 2
    assert 60 < client.ttl(counter) <= 120  # set by the first hit, not extended past two windows


def test_a_database_error_on_the_fast_path_stores_nothing_and_leaves_the_connection_usable(
    world, fast_only, monkeypatch
):
    from marketplace import api_support

    _, bot = _bot(world)
    bot.raise_request_exception = False
    before = Bid.objects.count()
    # The stored response's statement fails, after the bid's insert ran.
    monkeypatch.setattr(api_support, "_store_sql", lambda: "SELECT 1 / 0, %s, %s, %s, %s")
    assert _post(bot, bid_body(world.start), HTTP_IDEMPOTENCY_KEY="boom").status_code == 500
    monkeypatch.undo()
    monkeypatch.setattr(api.BidListApi, "post", lambda self, request: None)
    assert Bid.objects.count() == before
    assert not IdempotencyRecord.objects.filter(key="boom").exists()
    again = _post(bot, bid_body(world.start), HTTP_IDEMPOTENCY_KEY="boom")  # the retry runs afresh
    assert again.status_code == 201 and Bid.objects.count() == before + 1


@pytest.mark.django_db(transaction=True)
def test_a_bid_racing_a_round_close_reports_the_round_it_lands_in(acme, beta):
    """A round close locks the bid table (SHARE) and then closes the round. A bid that reaches its
    insert meanwhile waits, lands in the next round, and must say so: the round is read by the
    insert statement itself, after its lock, not earlier in the transaction."""
    from auctions import services as auction_services
    from auctions.models import Round
    from auctions.selectors import bid_id_of

    round_ = auction_services.round_open()
    _, raw = market.api_key_create(team=acme.team, actor=None, name="racer", scopes=["bids:write"])
    assert _post(key_client(raw), bid_body(round_.horizon_start)).status_code == 201
    # Another transaction holds the round's row, so the close, once it has locked the bid table,
    # waits there before it closes the round.
    replies = _race(
        "SELECT id FROM auctions_round WHERE id = %s FOR UPDATE",
        [round_.pk],
        ("close", lambda: auction_services.round_close(round_id=round_.pk)),
        ("bid", lambda: _post(key_client(raw), bid_body(round_.horizon_start))),
    )
    assert replies["close"] is not None and replies["bid"].status_code == 201
    placed = replies["bid"].json()
    closed = Round.objects.get(pk=round_.pk)
    assert placed["round"] == closed.number + 1
    assert placed["id"] not in {bid_id_of(b["id"]) for b in json.loads(closed.snapshot)["bids"]}
