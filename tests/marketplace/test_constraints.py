"""Database constraints hold even when a write bypasses the services."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, transaction

from marketplace.models import Bid, Gpu, Membership, Offer
from tests.factories import BidFactory, GpuFactory, OfferFactory

H = dt.timedelta(hours=1)


def _refused(queryset_update) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        queryset_update()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "changes",
    [
        {"gpus": 0},
        {"min_gpus": 0},
        {"min_gpus": 9},  # more than gpus (8)
        {"duration_hours": 0},
        {"limit_cents_per_gpu_hour": 0},
        {"limit_cents_per_gpu_hour": -1},
        {"status": "teleported"},
    ],
)
def test_a_bid_update_that_breaks_a_rule_fails_in_the_database(changes):
    bid = BidFactory()
    _refused(lambda: Bid.objects.filter(pk=bid.pk).update(**changes))
    bid.refresh_from_db()
    assert bid.gpus == 8 and bid.min_gpus == 8


@pytest.mark.django_db
def test_a_bid_window_that_ends_before_it_starts_fails_in_the_database():
    bid = BidFactory()
    _refused(lambda: Bid.objects.filter(pk=bid.pk).update(latest_end=bid.earliest_start))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "changes",
    [{"gpus": 0}, {"reserve_cents_per_gpu_hour": 0}, {"status": "sold-twice"}],
)
def test_an_offer_update_that_breaks_a_rule_fails_in_the_database(changes):
    offer = OfferFactory()
    _refused(lambda: Offer.objects.filter(pk=offer.pk).update(**changes))


@pytest.mark.django_db
def test_an_offer_window_must_be_half_open_and_non_empty_in_the_database():
    offer = OfferFactory()
    _refused(lambda: Offer.objects.filter(pk=offer.pk).update(end=offer.start))


@pytest.mark.django_db
def test_a_gpu_uuid_is_unique_in_the_database():
    gpu = GpuFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Gpu.objects.create(host=gpu.host, gpu_model=gpu.gpu_model, uuid=gpu.uuid)


@pytest.mark.django_db
def test_a_gpu_uuid_must_look_like_nvmls_in_the_database():
    gpu = GpuFactory()
    _refused(lambda: Gpu.objects.filter(pk=gpu.pk).update(uuid="not-a-uuid"))


@pytest.mark.django_db
def test_a_bid_idempotency_key_is_unique_per_team_in_the_database():
    bid = BidFactory()
    with pytest.raises(IntegrityError):
        BidFactory(team=bid.team, idempotency_key=bid.idempotency_key)


@pytest.mark.django_db
def test_a_membership_role_must_be_known_in_the_database(acme):
    _refused(lambda: Membership.objects.filter(team=acme.team).update(role="emperor"))
