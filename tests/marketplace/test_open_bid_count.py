"""The open-bid count the bid table's triggers keep (TeamOpenBids, migration 0007) always equals
the bids that are open, whatever path changes them: services, bulk ORM updates, deletes."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auctions import services as rounds
from marketplace import grid, services
from marketplace.errors import LimitExceeded
from marketplace.models import Bid, BidStatus, Scope, TeamOpenBids
from marketplace.specs import BidSpec


def _spec(gpus: int = 2) -> BidSpec:
    start = grid.slot_ceil(timezone.now()) + dt.timedelta(hours=1)
    return BidSpec(
        gpu_models=("H100-SXM-80GB",),
        gpus=gpus,
        min_gpus=gpus,
        duration_hours=2,
        earliest_start=start,
        latest_end=start + dt.timedelta(hours=6),
        colocate=True,
        limit_cents_per_gpu_hour=300,
    )


def _kept() -> dict[int, int]:
    return {t: n for t, n in TeamOpenBids.objects.values_list("team_id", "open_bids") if n}


def _counted() -> dict[int, int]:
    rows = Bid.objects.filter(status=BidStatus.OPEN).values_list("team_id").order_by()
    out: dict[int, int] = {}
    for (team_id,) in rows:
        out[team_id] = out.get(team_id, 0) + 1
    return out


pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="triggers are PostgreSQL's")

OPS = st.lists(
    st.tuples(
        st.sampled_from(["place", "batch", "cancel", "replace", "bulk_won", "bulk_reopen", "delete", "kill"]),
        st.integers(0, 1),  # which team
        st.integers(1, 4),  # how many / which bid
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_the_kept_count_equals_the_open_bids_after_any_changes(acme, beta, ops):
    teams = [acme, beta]
    keys = {
        side.team.pk: services.api_key_create(
            team=side.team, actor=None, name="k", scopes=[Scope.MARKET_READ, Scope.BIDS_WRITE]
        )[0]
        for side in teams
    }
    for n, (op, which, size) in enumerate(ops):
        side = teams[which]
        team = side.team
        open_ids = list(
            Bid.objects.filter(team=team, status=BidStatus.OPEN).order_by("id").values_list("id", flat=True)
        )
        key = f"{op}-{n}-{Bid.objects.count()}"
        if op == "place":
            services.bid_place(
                team=team, actor=side.trader, spec=_spec(), idempotency_key=key, api_key=keys[team.pk]
            )
        elif op == "batch":
            services.bid_place_batch(
                team=team, actor=side.trader, specs=[_spec()] * size, idempotency_key=key
            )
        elif op == "cancel" and open_ids:
            services.bid_cancel(team=team, actor=side.trader, bid_id=open_ids[size % len(open_ids)])
        elif op == "replace" and open_ids:
            services.bid_replace(
                team=team,
                actor=side.trader,
                bid_id=open_ids[size % len(open_ids)],
                spec=_spec(4),
                idempotency_key=key,
            )
        elif op == "bulk_won":  # as clearing marks winners: one UPDATE over many bids and teams
            Bid.objects.filter(pk__in=open_ids[:size]).update(status=BidStatus.WON)
        elif op == "bulk_reopen":
            Bid.objects.filter(team=team, status=BidStatus.WON).update(status=BidStatus.OPEN)
        elif op == "delete" and open_ids:
            Bid.gpu_models.through.objects.filter(bid_id=open_ids[0]).delete()
            Bid.objects.filter(pk=open_ids[0], replaced_by__isnull=True).delete()
        elif op == "kill":
            rounds.api_key_kill(team=team, actor=side.owner, key_id=keys[team.pk].pk)
            keys[team.pk] = services.api_key_create(
                team=team, actor=None, name="k", scopes=[Scope.MARKET_READ, Scope.BIDS_WRITE]
            )[0]
        assert _kept() == _counted(), (op, n)


def test_the_open_bid_limit_reads_the_kept_count(acme, settings):
    settings.MAX_OPEN_BIDS = 3
    placed = [
        services.bid_place(team=acme.team, actor=acme.trader, spec=_spec(), idempotency_key=f"l{i}")
        for i in range(3)
    ]
    with pytest.raises(LimitExceeded) as refused:
        services.bid_place(team=acme.team, actor=acme.trader, spec=_spec(), idempotency_key="l3")
    assert refused.value.code == "too_many_open_bids" and "has 3 open bids" in refused.value.message
    services.bid_cancel(team=acme.team, actor=acme.trader, bid_id=placed[0].pk)
    assert services.bid_place(team=acme.team, actor=acme.trader, spec=_spec(), idempotency_key="l3").pk
    assert TeamOpenBids.objects.get(team=acme.team).open_bids == 3
