"""factory_boy factories for the market's core; they write rows directly (for arranging tests)."""

from __future__ import annotations

import datetime as dt
import uuid

import factory
from django.utils import timezone

from marketplace import grid
from marketplace.models import Bid, Cluster, Gpu, GpuModel, Host, Membership, Offer, Role, Team, User


def next_slot(hours: int = 0) -> dt.datetime:
    return grid.slot_ceil(timezone.now()) + dt.timedelta(hours=hours)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    # Hashed before the insert, so the stored hash is the one a session is bound to.
    password = factory.django.Password("pw")


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    name = factory.Sequence(lambda n: f"Team {n}")
    slug = factory.Sequence(lambda n: f"team-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    team = factory.SubFactory(TeamFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.TRADER


class ClusterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Cluster

    team = factory.SubFactory(TeamFactory)
    name = factory.Sequence(lambda n: f"c{n:03d}")
    region = "us-west"
    interconnect = "infiniband"


class HostFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Host

    cluster = factory.SubFactory(ClusterFactory)
    hostname = factory.Sequence(lambda n: f"host-{n:04d}")


class GpuFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Gpu

    host = factory.SubFactory(HostFactory)
    gpu_model = factory.LazyFunction(lambda: GpuModel.objects.get(name="H100-SXM-80GB"))
    uuid = factory.LazyFunction(lambda: f"GPU-{uuid.uuid4()}")


class OfferFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Offer

    cluster = factory.SubFactory(ClusterFactory)
    team = factory.SelfAttribute("cluster.team")
    gpu_model = factory.LazyFunction(lambda: GpuModel.objects.get(name="H100-SXM-80GB"))
    gpus = 8
    start = factory.LazyFunction(lambda: next_slot(1))
    end = factory.LazyFunction(lambda: next_slot(25))
    reserve_cents_per_gpu_hour = 180


class BidFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Bid
        skip_postgeneration_save = True

    team = factory.SubFactory(TeamFactory)
    gpus = 8
    min_gpus = 8
    duration_hours = 4
    earliest_start = factory.LazyFunction(lambda: next_slot(1))
    latest_end = factory.LazyFunction(lambda: next_slot(25))
    colocate = True
    limit_cents_per_gpu_hour = 250
    idempotency_key = factory.Sequence(lambda n: f"key-{n}")

    @factory.post_generation
    def gpu_models(self, create: bool, extracted: list[str] | None, **kwargs: object) -> None:
        if create:
            self.gpu_models.set(GpuModel.objects.filter(name__in=extracted or ["H100-SXM-80GB"]))
