"""Services of the market's core: what they store, and every rule they refuse with."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from marketplace import services
from marketplace.errors import (
    Conflict,
    IdempotencyConflict,
    InvalidInput,
    LimitExceeded,
    NotFound,
    PermissionDenied,
)
from marketplace.models import Bid, BidStatus, Membership, Offer, OfferStatus, Role
from marketplace.specs import BidSpec, OfferSpec
from tests.conftest import NEXT_SLOT
from tests.factories import BidFactory, UserFactory

pytestmark = pytest.mark.usefixtures("frozen_now")
H = dt.timedelta(hours=1)


def a_bid(**changes: object) -> BidSpec:
    spec = BidSpec(
        gpu_models=("H100-SXM-80GB",),
        gpus=8,
        min_gpus=4,
        duration_hours=6,
        earliest_start=NEXT_SLOT,
        latest_end=NEXT_SLOT + 24 * H,
        colocate=True,
        limit_cents_per_gpu_hour=250,
        xor_group="",
    )
    return dataclasses.replace(spec, **changes)


def an_offer(cluster_id: int, **changes: object) -> OfferSpec:
    spec = OfferSpec(
        cluster_id=cluster_id,
        gpu_model="H100-SXM-80GB",
        gpus=8,
        start=NEXT_SLOT,
        end=NEXT_SLOT + 24 * H,
        reserve_cents_per_gpu_hour=180,
    )
    return dataclasses.replace(spec, **changes)


# --- bids ------------------------------------------------------------------------------------


def test_a_trader_places_a_bid_that_records_every_field(acme):
    bid = services.bid_place(
        team=acme.team, actor=acme.trader, spec=a_bid(xor_group="g1"), idempotency_key="k1"
    )
    bid.refresh_from_db()
    assert (bid.gpus, bid.min_gpus, bid.duration_hours, bid.limit_cents_per_gpu_hour) == (8, 4, 6, 250)
    assert (bid.earliest_start, bid.latest_end, bid.colocate, bid.xor_group) == (
        NEXT_SLOT,
        NEXT_SLOT + 24 * H,
        True,
        "g1",
    )
    assert [m.name for m in bid.gpu_models.all()] == ["H100-SXM-80GB"]
    assert bid.status == BidStatus.OPEN and bid.placed_by == acme.trader


def test_the_same_idempotency_key_and_request_returns_the_first_bid(acme):
    first = services.bid_place(team=acme.team, actor=acme.trader, spec=a_bid(), idempotency_key="k1")
    again = services.bid_place(team=acme.team, actor=acme.trader, spec=a_bid(), idempotency_key="k1")
    assert again.pk == first.pk
    assert Bid.objects.count() == 1


def test_model_order_does_not_make_a_retry_look_like_a_different_request(acme):
    two = ("H100-SXM-80GB", "H200-SXM-141GB")
    first = services.bid_place(
        team=acme.team, actor=acme.trader, spec=a_bid(gpu_models=two), idempotency_key="k"
    )
    again = services.bid_place(
        team=acme.team, actor=acme.trader, spec=a_bid(gpu_models=two[::-1]), idempotency_key="k"
    )
    assert again.pk == first.pk


def test_the_same_key_with_a_different_request_is_a_conflict_and_changes_nothing(acme):
    services.bid_place(team=acme.team, actor=acme.trader, spec=a_bid(), idempotency_key="k1")
    with pytest.raises(IdempotencyConflict):
        services.bid_place(team=acme.team, actor=acme.trader, spec=a_bid(gpus=9), idempotency_key="k1")
    assert list(Bid.objects.values_list("gpus", flat=True)) == [8]


def test_another_team_may_use_the_same_idempotency_key_for_its_own_bid(acme, beta):
    a = services.bid_place(team=acme.team, actor=acme.trader, spec=a_bid(), idempotency_key="k1")
    b = services.bid_place(
        team=beta.team, actor=beta.trader, spec=a_bid(gpus=2, min_gpus=1), idempotency_key="k1"
    )
    assert a.pk != b.pk and b.team == beta.team


BAD_BIDS = [
    ({"gpus": 0}, "gpus", "too_small"),
    ({"gpus": -3}, "gpus", "too_small"),
    ({"gpus": 100_000, "min_gpus": 1}, "gpus", "too_large"),
    ({"min_gpus": 0}, "min_gpus", "too_small"),
    ({"min_gpus": 9}, "min_gpus", "min_above_gpus"),
    ({"duration_hours": 0}, "duration_hours", "too_small"),
    ({"duration_hours": 30}, "duration_hours", "window_shorter_than_duration"),
    ({"earliest_start": NEXT_SLOT - 2 * H}, "earliest_start", "in_past"),
    ({"earliest_start": NEXT_SLOT + dt.timedelta(minutes=30)}, "earliest_start", "off_grid"),
    ({"latest_end": NEXT_SLOT + 15 * 24 * H}, "latest_end", "beyond_horizon"),
    ({"latest_end": NEXT_SLOT}, "latest_end", "end_not_after_start"),
    ({"earliest_start": NEXT_SLOT.replace(tzinfo=None)}, "earliest_start", "naive_datetime"),
    ({"limit_cents_per_gpu_hour": 0}, "limit_cents_per_gpu_hour", "not_positive"),
    ({"limit_cents_per_gpu_hour": -5}, "limit_cents_per_gpu_hour", "not_positive"),
    ({"limit_cents_per_gpu_hour": 10**9}, "limit_cents_per_gpu_hour", "absurd_price"),
    ({"gpu_models": ("H999-IMAGINARY",)}, "gpu_models[0]", "unknown_model"),
    ({"gpu_models": ()}, "gpu_models", "empty"),
    ({"gpu_models": ("H100-SXM-80GB", "H100-SXM-80GB")}, "gpu_models", "duplicate"),
    ({"xor_group": "has spaces"}, "xor_group", "invalid_label"),
]


@pytest.mark.parametrize(("changes", "field", "code"), BAD_BIDS)
def test_a_bad_bid_is_refused_naming_the_field_and_rule_and_nothing_is_stored(acme, changes, field, code):
    services.bid_place(team=acme.team, actor=acme.trader, spec=a_bid(), idempotency_key="already-there")
    with pytest.raises(InvalidInput) as err:
        services.bid_place(team=acme.team, actor=acme.trader, spec=a_bid(**changes), idempotency_key="new")
    assert (field, code) in [(e.field, e.code) for e in err.value.errors]
    assert all(e.message for e in err.value.errors)
    assert list(Bid.objects.values_list("idempotency_key", flat=True)) == ["already-there"]


def test_every_problem_of_a_bid_is_reported_at_once(acme):
    with pytest.raises(InvalidInput) as err:
        services.bid_place(
            team=acme.team,
            actor=acme.trader,
            spec=a_bid(gpus=0, limit_cents_per_gpu_hour=0, gpu_models=("nope",)),
            idempotency_key="k",
        )
    assert {e.field for e in err.value.errors} >= {"gpus", "limit_cents_per_gpu_hour", "gpu_models[0]"}


def test_a_viewer_cannot_place_a_bid(acme):
    with pytest.raises(PermissionDenied):
        services.bid_place(team=acme.team, actor=acme.viewer, spec=a_bid(), idempotency_key="k")
    assert not Bid.objects.exists()


def test_a_stranger_cannot_place_a_bid_for_a_team_and_learns_nothing_about_it(acme):
    with pytest.raises(NotFound):
        services.bid_place(team=acme.team, actor=UserFactory(), spec=a_bid(), idempotency_key="k")


def test_the_open_bid_limit_refuses_the_bid_past_it(acme, settings):
    settings.MAX_OPEN_BIDS = 2
    for key in ("a", "b"):
        services.bid_place(team=acme.team, actor=acme.trader, spec=a_bid(), idempotency_key=key)
    with pytest.raises(LimitExceeded) as err:
        services.bid_place(team=acme.team, actor=acme.trader, spec=a_bid(), idempotency_key="c")
    assert err.value.code == "too_many_open_bids"
    assert Bid.objects.filter(team=acme.team).count() == 2


def test_cancelled_bids_do_not_count_towards_the_open_bid_limit(acme, settings):
    settings.MAX_OPEN_BIDS = 1
    first = services.bid_place(team=acme.team, actor=acme.trader, spec=a_bid(), idempotency_key="a")
    services.bid_cancel(team=acme.team, actor=acme.trader, bid_id=first.pk)
    services.bid_place(team=acme.team, actor=acme.trader, spec=a_bid(), idempotency_key="b")
    assert Bid.objects.filter(team=acme.team, status=BidStatus.OPEN).count() == 1


def test_cancelling_a_bid_twice_leaves_it_cancelled(acme):
    bid = services.bid_place(team=acme.team, actor=acme.trader, spec=a_bid(), idempotency_key="k")
    services.bid_cancel(team=acme.team, actor=acme.trader, bid_id=bid.pk)
    again = services.bid_cancel(team=acme.team, actor=acme.trader, bid_id=bid.pk)
    assert again.status == BidStatus.CANCELLED and again.cancelled_at is not None


def test_a_bid_that_won_cannot_be_cancelled(acme):
    bid = BidFactory(team=acme.team, status=BidStatus.WON)
    with pytest.raises(Conflict):
        services.bid_cancel(team=acme.team, actor=acme.trader, bid_id=bid.pk)
    bid.refresh_from_db()
    assert bid.status == BidStatus.WON


def test_another_teams_bid_cannot_be_cancelled_and_looks_absent(acme, beta):
    theirs = services.bid_place(team=beta.team, actor=beta.trader, spec=a_bid(), idempotency_key="k")
    with pytest.raises(NotFound):
        services.bid_cancel(team=acme.team, actor=acme.trader, bid_id=theirs.pk)
    theirs.refresh_from_db()
    assert theirs.status == BidStatus.OPEN


def test_replacing_a_bid_retires_the_old_one_and_links_the_new_one(acme):
    old = services.bid_place(team=acme.team, actor=acme.trader, spec=a_bid(), idempotency_key="k1")
    new = services.bid_replace(
        team=acme.team,
        actor=acme.trader,
        bid_id=old.pk,
        spec=a_bid(limit_cents_per_gpu_hour=300),
        idempotency_key="k2",
    )
    old.refresh_from_db()
    assert old.status == BidStatus.REPLACED
    assert new.replaces == old and new.status == BidStatus.OPEN and new.limit_cents_per_gpu_hour == 300


def test_a_bad_replacement_leaves_the_old_bid_standing(acme):
    old = services.bid_place(team=acme.team, actor=acme.trader, spec=a_bid(), idempotency_key="k1")
    with pytest.raises(InvalidInput):
        services.bid_replace(
            team=acme.team, actor=acme.trader, bid_id=old.pk, spec=a_bid(gpus=0), idempotency_key="k2"
        )
    old.refresh_from_db()
    assert old.status == BidStatus.OPEN and Bid.objects.count() == 1


def test_replacing_a_bid_is_idempotent_by_key(acme):
    old = services.bid_place(team=acme.team, actor=acme.trader, spec=a_bid(), idempotency_key="k1")
    spec = a_bid(gpus=6)
    first = services.bid_replace(
        team=acme.team, actor=acme.trader, bid_id=old.pk, spec=spec, idempotency_key="k2"
    )
    again = services.bid_replace(
        team=acme.team, actor=acme.trader, bid_id=old.pk, spec=spec, idempotency_key="k2"
    )
    assert first.pk == again.pk and Bid.objects.count() == 2


# --- offers ----------------------------------------------------------------------------------


def test_a_seller_offers_gpus_it_has(acme):
    offer = services.offer_post(team=acme.team, actor=acme.trader, spec=an_offer(acme.cluster.pk, gpus=16))
    assert offer.status == OfferStatus.LIVE and offer.gpus == 16 and offer.cluster == acme.cluster


def test_an_offer_beyond_the_teams_inventory_is_refused(acme):
    services.offer_post(team=acme.team, actor=acme.trader, spec=an_offer(acme.cluster.pk, gpus=10))
    with pytest.raises(LimitExceeded) as err:
        services.offer_post(team=acme.team, actor=acme.trader, spec=an_offer(acme.cluster.pk, gpus=7))
    assert err.value.code == "exceeds_inventory" and err.value.field == "gpus"
    assert "at most 6 more" in err.value.message
    assert Offer.objects.count() == 1


def test_offers_at_different_times_may_each_use_all_the_gpus(acme):
    first = an_offer(acme.cluster.pk, gpus=16, end=NEXT_SLOT + 5 * H)
    # Half-open windows: one ending at 15:00 and one starting at 15:00 do not overlap.
    second = an_offer(acme.cluster.pk, gpus=16, start=NEXT_SLOT + 5 * H, end=NEXT_SLOT + 9 * H)
    services.offer_post(team=acme.team, actor=acme.trader, spec=first)
    services.offer_post(team=acme.team, actor=acme.trader, spec=second)
    assert Offer.objects.filter(team=acme.team).count() == 2


def test_the_peak_of_overlapping_offers_is_what_counts(acme):
    services.offer_post(
        team=acme.team, actor=acme.trader, spec=an_offer(acme.cluster.pk, gpus=8, end=NEXT_SLOT + 4 * H)
    )
    services.offer_post(
        team=acme.team,
        actor=acme.trader,
        spec=an_offer(acme.cluster.pk, gpus=8, start=NEXT_SLOT + 4 * H, end=NEXT_SLOT + 8 * H),
    )
    # Spans both earlier offers but each moment only has 8 committed, so 8 more fit.
    services.offer_post(
        team=acme.team, actor=acme.trader, spec=an_offer(acme.cluster.pk, gpus=8, end=NEXT_SLOT + 8 * H)
    )
    with pytest.raises(LimitExceeded):
        services.offer_post(
            team=acme.team, actor=acme.trader, spec=an_offer(acme.cluster.pk, gpus=1, end=NEXT_SLOT + 2 * H)
        )


def test_a_cancelled_offer_frees_its_gpus(acme):
    offer = services.offer_post(team=acme.team, actor=acme.trader, spec=an_offer(acme.cluster.pk, gpus=16))
    services.offer_cancel(team=acme.team, actor=acme.trader, offer_id=offer.pk)
    services.offer_post(team=acme.team, actor=acme.trader, spec=an_offer(acme.cluster.pk, gpus=16))
    assert Offer.objects.filter(status=OfferStatus.LIVE).count() == 1


def test_gpus_of_another_model_do_not_count_as_inventory(acme):
    with pytest.raises(LimitExceeded):
        services.offer_post(
            team=acme.team,
            actor=acme.trader,
            spec=an_offer(acme.cluster.pk, gpus=1, gpu_model="A100-SXM-80GB"),
        )


def test_an_offer_in_another_teams_cluster_is_refused_as_unknown(acme, beta):
    with pytest.raises(InvalidInput) as err:
        services.offer_post(team=acme.team, actor=acme.trader, spec=an_offer(beta.cluster.pk))
    assert [(e.field, e.code) for e in err.value.errors] == [("cluster", "unknown_cluster")]
    assert not Offer.objects.exists()


BAD_OFFERS = [
    ({"gpus": 0}, "gpus", "too_small"),
    ({"reserve_cents_per_gpu_hour": 0}, "reserve_cents_per_gpu_hour", "not_positive"),
    ({"reserve_cents_per_gpu_hour": 10**8}, "reserve_cents_per_gpu_hour", "absurd_price"),
    ({"start": NEXT_SLOT - H}, "start", "in_past"),
    ({"end": NEXT_SLOT + dt.timedelta(minutes=90)}, "end", "off_grid"),
    ({"end": NEXT_SLOT + 20 * 24 * H}, "end", "beyond_horizon"),
    ({"end": NEXT_SLOT}, "end", "end_not_after_start"),
    ({"gpu_model": "Z1"}, "gpu_model", "unknown_model"),
]


@pytest.mark.parametrize(("changes", "field", "code"), BAD_OFFERS)
def test_a_bad_offer_is_refused_naming_the_field_and_rule(acme, changes, field, code):
    with pytest.raises(InvalidInput) as err:
        services.offer_post(team=acme.team, actor=acme.trader, spec=an_offer(acme.cluster.pk, **changes))
    assert (field, code) in [(e.field, e.code) for e in err.value.errors]
    assert not Offer.objects.exists()


def test_an_offer_with_a_used_key_and_another_request_is_a_conflict(acme):
    services.offer_post(
        team=acme.team, actor=acme.trader, spec=an_offer(acme.cluster.pk), idempotency_key="o1"
    )
    with pytest.raises(IdempotencyConflict):
        services.offer_post(
            team=acme.team, actor=acme.trader, spec=an_offer(acme.cluster.pk, gpus=2), idempotency_key="o1"
        )


# --- teams and inventory -----------------------------------------------------------------------


def test_creating_a_team_makes_its_creator_the_owner(db):
    user = UserFactory()
    team = services.team_create(name="Gamma GPUs", owner=user)
    assert team.slug == "gamma-gpus"
    assert Membership.objects.get(team=team, user=user).role == Role.OWNER


def test_a_team_name_taken_in_another_case_is_refused(db):
    services.team_create(name="Gamma", owner=UserFactory())
    with pytest.raises(InvalidInput) as err:
        services.team_create(name="gamma", owner=UserFactory())
    assert err.value.errors[0].code == "taken"


def test_only_an_owner_adds_members(acme):
    newcomer = UserFactory()
    with pytest.raises(PermissionDenied):
        services.member_add(team=acme.team, actor=acme.trader, user=newcomer, role=Role.VIEWER)
    services.member_add(team=acme.team, actor=acme.owner, user=newcomer, role=Role.VIEWER)
    assert Membership.objects.get(team=acme.team, user=newcomer).role == Role.VIEWER


def test_the_last_owner_cannot_be_demoted(acme):
    with pytest.raises(Conflict):
        services.member_add(team=acme.team, actor=acme.owner, user=acme.owner, role=Role.VIEWER)


def test_a_gpu_uuid_is_registered_once_worldwide(acme, beta):
    uuid = "GPU-11111111-2222-3333-4444-555555555555"
    services.gpu_register(
        team=acme.team, actor=acme.owner, host_id=acme.host.pk, gpu_model="H100-SXM-80GB", uuid=uuid
    )
    with pytest.raises(InvalidInput) as err:
        services.gpu_register(
            team=beta.team, actor=beta.owner, host_id=beta.host.pk, gpu_model="H100-SXM-80GB", uuid=uuid
        )
    assert err.value.errors[0].field == "uuid"


def test_a_gpu_cannot_be_registered_on_another_teams_host(acme, beta):
    with pytest.raises(InvalidInput) as err:
        services.gpu_register(
            team=acme.team,
            actor=acme.owner,
            host_id=beta.host.pk,
            gpu_model="H100-SXM-80GB",
            uuid="GPU-abcdefgh",
        )
    assert ("host", "unknown_host") in [(e.field, e.code) for e in err.value.errors]


def test_a_cluster_needs_a_known_interconnect_and_a_region(acme):
    with pytest.raises(InvalidInput) as err:
        services.cluster_create(team=acme.team, actor=acme.owner, name="x", region="", interconnect="pigeon")
    assert {e.field for e in err.value.errors} == {"region", "interconnect"}


# --- expiry ----------------------------------------------------------------------------------


def test_orders_whose_window_can_no_longer_be_met_expire(acme):
    keep = services.bid_place(team=acme.team, actor=acme.trader, spec=a_bid(), idempotency_key="keep")
    tight = services.bid_place(
        team=acme.team,
        actor=acme.trader,
        spec=a_bid(duration_hours=6, latest_end=NEXT_SLOT + 7 * H),
        idempotency_key="t",
    )
    offer = services.offer_post(
        team=acme.team, actor=acme.trader, spec=an_offer(acme.cluster.pk, end=NEXT_SLOT + 2 * H)
    )
    later = NEXT_SLOT + dt.timedelta(hours=1, minutes=30)  # next slot is then NEXT_SLOT + 2h
    assert services.orders_expire(now=later) == {"offers": 1, "bids": 1}
    assert services.orders_expire(now=later) == {"offers": 0, "bids": 0}
    statuses = dict(Bid.objects.values_list("pk", "status"))
    assert statuses == {keep.pk: BidStatus.OPEN, tight.pk: BidStatus.EXPIRED}
    offer.refresh_from_db()
    assert offer.status == OfferStatus.EXPIRED
