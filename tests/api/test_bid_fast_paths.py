"""The bid API's fast paths: a fixed number of queries per request, and hand-written readers and
writers that agree with the DRF serializers and Django's ORM they stand in for."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from auctions.api import BidIn, BidOut, bid_out, plain_spec
from marketplace import services as market
from marketplace.models import Bid, IdempotencyRecord
from marketplace.receipts import bid_receipt_document, receipt_of

from .conftest import bid_body, key_client

# A bid request is: the key (1), then in one transaction the idempotency record (1), the team lock
# (1), open bids + retried bids + fresh ids (1), billing's guard (1), the bids with their model
# links (1), the open round (1), the stored response (1); the test's own transaction adds a
# savepoint and its release (2). A batch makes the same statements, whatever its size.
QUERIES_PER_BID_REQUEST = 10


def _bot(world):
    _, raw = market.api_key_create(
        team=world.acme.team, actor=None, name="fast", scopes=["market:read", "bids:write"]
    )
    return key_client(raw)


def test_a_bid_request_makes_a_fixed_number_of_queries(world, django_assert_max_num_queries, settings):
    settings.MAX_OPEN_BIDS = 10_000
    bot = _bot(world)
    assert bot.post("/api/v1/bids", bid_body(world.start), format="json").status_code == 201  # warm
    with django_assert_max_num_queries(QUERIES_PER_BID_REQUEST):
        single = bot.post("/api/v1/bids", bid_body(world.start), format="json", HTTP_IDEMPOTENCY_KEY="one")
    assert single.status_code == 201
    bids = [
        bid_body(world.start, gpus=1 + i % 8, min_gpus=1, gpu_models=["H100-SXM-80GB", "A100-SXM-80GB"])
        for i in range(1000)
    ]
    with django_assert_max_num_queries(QUERIES_PER_BID_REQUEST):
        batch = bot.post("/api/v1/bids/batch", {"bids": bids}, format="json", HTTP_IDEMPOTENCY_KEY="many")
    assert batch.status_code == 201
    placed = batch.json()["bids"]
    assert len(placed) == 1000
    stored = Bid.objects.filter(pk__in=[b["id"] for b in placed]).prefetch_related("gpu_models")
    assert stored.count() == 1000
    assert all(
        sorted(m.name for m in b.gpu_models.all()) == ["A100-SXM-80GB", "H100-SXM-80GB"] for b in stored
    )


def test_the_receipt_written_with_the_bid_commits_to_its_stored_terms(world):
    bot = _bot(world)
    reply = bot.post(
        "/api/v1/bids/batch",
        {"bids": [bid_body(world.start, xor_group="a.b:c-d"), bid_body(world.start)]},
        format="json",
        HTTP_IDEMPOTENCY_KEY='key with "quotes", \\ and {braces}',
    )
    assert reply.status_code == 201
    for item in reply.json()["bids"]:
        bid = Bid.objects.select_related("team").get(pk=item["id"])
        assert bid.receipt == item["receipt"] == receipt_of(bid_receipt_document(bid))
    assert Bid.objects.filter(xor_group="a.b:c-d").count() == 1
    assert Bid.objects.filter(idempotency_key='key with "quotes", \\ and {braces}#1').count() == 1


def test_the_stored_response_is_what_the_first_request_got(world):
    bot = _bot(world)
    first = bot.post("/api/v1/bids", bid_body(world.start), format="json", HTTP_IDEMPOTENCY_KEY="again")
    record = IdempotencyRecord.objects.get(team=world.acme.team, key="again")
    assert record.status_code == 201
    again = bot.post("/api/v1/bids", bid_body(world.start), format="json", HTTP_IDEMPOTENCY_KEY="again")
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"


def test_bid_out_is_what_bidout_gives(world):
    bot = _bot(world)
    placed = bot.post("/api/v1/bids", bid_body(world.start, xor_group="g"), format="json").json()
    replaced = bot.post(f"/api/v1/bids/{placed['id']}/replace", bid_body(world.start, gpus=6), format="json")
    assert replaced.status_code == 201
    bot.post(f"/api/v1/bids/{replaced.json()['id']}/cancel")
    for bid in Bid.objects.select_related("api_key").prefetch_related("gpu_models"):
        assert bid_out(bid) == dict(BidOut(bid).data)
        assert bid_out(bid, [m.name for m in bid.gpu_models.all()]) == dict(BidOut(bid).data)


# --- The request reader agrees with BidIn -----------------------------------------------------

_text = st.one_of(
    st.sampled_from(["H100-SXM-80GB", "A100-SXM-80GB", "", " H100-SXM-80GB", "x" * 65, "a\x00b", "g\t"]),
    st.text(max_size=70),
)
_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False),
    _text,
    st.lists(_text, max_size=3),
    st.sampled_from(
        [
            "2026-12-01T10:00:00Z",
            "2026-12-01T10:00:00+02:00",
            "2026-12-01T10:00:00",
            "2026-12-01T10:99:00Z",
            "2026-12-01",
            "tomorrow",
        ]
    ),
)
_good = {
    "gpu_models": ["H100-SXM-80GB"],
    "gpus": 4,
    "duration_hours": 2,
    "earliest_start": "2026-12-01T10:00:00Z",
    "latest_end": "2026-12-01T16:00:00+01:00",
    "limit_cents_per_gpu_hour": 300,
}
_fields = [*_good, "min_gpus", "colocate", "xor_group", "unknown"]


@st.composite
def bid_requests(draw: st.DrawFn) -> Any:
    body: dict[str, Any] = dict(_good)
    for name in draw(st.lists(st.sampled_from(_fields), max_size=4, unique=True)):
        if draw(st.booleans()):
            body.pop(name, None)
        else:
            body[name] = draw(_value)
    return draw(st.one_of(st.just(body), st.just(body), st.sampled_from([None, [], "bid", 3])))


@settings(max_examples=400, deadline=None)
@given(bid_requests())
def test_the_fast_reader_accepts_only_what_bidin_accepts_and_reads_it_alike(data):
    fast = plain_spec(data)
    checked = BidIn(data=data)
    valid = checked.is_valid()
    if fast is not None:
        assert valid, checked.errors
        assert fast == checked.to_spec()
    if not valid:
        assert fast is None


def test_the_fast_reader_takes_the_usual_bid():
    spec = plain_spec({**_good, "min_gpus": 2, "colocate": False, "xor_group": "alt"})
    assert spec is not None
    assert spec.latest_end == dt.datetime(2026, 12, 1, 15, tzinfo=dt.UTC) and spec.min_gpus == 2


def test_bid_out_formats_times_as_drf_does():
    moment = dt.datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=dt.UTC)
    assert serializers.DateTimeField().to_representation(moment) == "2026-12-01T10:00:00.123456Z"


# --- Array literals -----------------------------------------------------------------------------


@pytest.mark.django_db
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(
            st.none(), st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
        )
    ),
    st.lists(st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.booleans())),
)
def test_array_literals_read_back_as_the_values_sent(texts, numbers):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT %s::text[], %s::bigint[]",
            [market._pg_array(texts), market._pg_array(n for n in numbers if not isinstance(n, bool))],
        )
        got_texts, got_numbers = cursor.fetchone()
    assert got_texts == texts
    assert got_numbers == [n for n in numbers if not isinstance(n, bool)]
