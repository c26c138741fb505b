"""Shared fixtures: a frozen clock on the slot grid and a two-team market."""

from __future__ import annotations

import datetime as dt
import importlib
from dataclasses import dataclass

import pytest
import time_machine
from django.apps import apps

from marketplace.models import Cluster, Host, Role, Team, User
from tests.factories import (
    ClusterFactory,
    GpuFactory,
    HostFactory,
    MembershipFactory,
    TeamFactory,
    UserFactory,
)

# A fixed "now", 20 minutes into a slot, so window rules have a known answer.
NOW = dt.datetime(2026, 12, 1, 9, 20, tzinfo=dt.UTC)
NEXT_SLOT = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield NOW


@dataclass
class Side:
    team: Team
    owner: User
    trader: User
    viewer: User
    cluster: Cluster
    host: Host


def ensure_gpu_catalogue() -> None:
    """Re-seed the catalogue: transactional tests flush the tables the data migration filled."""
    seed = importlib.import_module("marketplace.migrations.0002_seed_gpu_models").seed
    seed(apps, None)


@pytest.fixture
def gpu_catalogue(db) -> None:
    ensure_gpu_catalogue()


def _side(name: str) -> Side:
    ensure_gpu_catalogue()
    team = TeamFactory(name=name, slug=name.lower())
    owner, trader, viewer = UserFactory(), UserFactory(), UserFactory()
    MembershipFactory(team=team, user=owner, role=Role.OWNER)
    MembershipFactory(team=team, user=trader, role=Role.TRADER)
    MembershipFactory(team=team, user=viewer, role=Role.VIEWER)
    cluster = ClusterFactory(team=team, name="main")
    host = HostFactory(cluster=cluster)
    GpuFactory.create_batch(16, host=host)
    return Side(team=team, owner=owner, trader=trader, viewer=viewer, cluster=cluster, host=host)


@pytest.fixture
def acme(db) -> Side:
    """A team with 16 H100s in cluster 'main'."""
    return _side("Acme")


@pytest.fixture
def beta(db) -> Side:
    """Another team, with its own 16 H100s."""
    return _side("Beta")
