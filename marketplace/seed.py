"""A small, realistic demo market built through the services; safe to run again."""

from __future__ import annotations

import datetime as dt
import uuid

from django.db import transaction
from django.utils import timezone

from . import grid, services
from .models import Bid, BidStatus, Cluster, Gpu, Host, Offer, OfferStatus, Role, Team, User
from .specs import BidSpec, OfferSpec

DEMO_PASSWORD = "gridx-demo"  # noqa: S105 - a published demo login, never used outside the demo
NAMESPACE = uuid.UUID("6f1c1a52-3b7e-4c1e-9a55-0d9b7f0c2a11")

# team name, user, role, clusters: (name, region, interconnect, {model: (hosts, gpus per host)})
SELLERS = [
    (
        "Acme Compute",
        "seller@demo.gridx.dev",
        [
            ("sfo-a", "us-west", "infiniband", {"H100-SXM-80GB": (4, 8), "H200-SXM-141GB": (2, 8)}),
            ("iad-1", "us-east", "roce", {"A100-SXM-80GB": (4, 8)}),
        ],
    ),
    (
        "Boreal AI",
        "boreal@demo.gridx.dev",
        [
            ("osl-1", "eu-north", "infiniband", {"H100-SXM-80GB": (2, 8), "B200-SXM-192GB": (2, 8)}),
        ],
    ),
    (
        "Coral Labs",
        "coral@demo.gridx.dev",
        [
            ("sin-2", "ap-southeast", "ethernet", {"L40S-48GB": (4, 4), "MI300X-192GB": (2, 8)}),
        ],
    ),
]
BUYERS = [
    ("Delta Models", "buyer@demo.gridx.dev"),
    ("Echo Research", "echo@demo.gridx.dev"),
    ("Fjord Robotics", "fjord@demo.gridx.dev"),
]


def _user(email: str, *, staff: bool = False) -> User:
    user = User.objects.filter(email=email).first()
    if user is None:
        user = User.objects.create_user(
            email=email, password=DEMO_PASSWORD, is_staff=staff, is_superuser=staff
        )
    return user


def _team(name: str, owner: User) -> Team:
    team = Team.objects.filter(name=name).first()
    return team or services.team_create(name=name, owner=owner)


@transaction.atomic
def demo_market_seed(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Create the demo's users, teams, inventory and some live orders, unless they exist."""
    now = now or timezone.now()
    start = grid.slot_ceil(now)
    _user("staff@demo.gridx.dev", staff=True)
    created = {"offers": 0, "bids": 0}
    for team_name, email, clusters in SELLERS:
        owner = _user(email)
        team = _team(team_name, owner)
        for c_name, region, interconnect, models in clusters:
            cluster = Cluster.objects.filter(team=team, name=c_name).first() or services.cluster_create(
                team=team, actor=owner, name=c_name, region=region, interconnect=interconnect
            )
            for model, (hosts, per_host) in models.items():
                for h in range(hosts):
                    hostname = f"{c_name}-{model.split('-')[0].lower()}-{h:02d}"
                    host = Host.objects.filter(
                        cluster=cluster, hostname=hostname
                    ).first() or services.host_register(
                        team=team, actor=owner, cluster_id=cluster.pk, hostname=hostname
                    )
                    for g in range(per_host):
                        gpu_uuid = f"GPU-{uuid.uuid5(NAMESPACE, f'{hostname}/{g}')}"
                        if not Gpu.objects.filter(uuid=gpu_uuid).exists():
                            services.gpu_register(
                                team=team, actor=owner, host_id=host.pk, gpu_model=model, uuid=gpu_uuid
                            )
                if not Offer.objects.filter(
                    cluster=cluster, gpu_model__name=model, status=OfferStatus.LIVE
                ).exists():
                    reserve = {"H100": 180, "H200": 230, "B200": 350, "A100": 110, "L40S": 70, "MI300X": 160}
                    services.offer_post(
                        team=team,
                        actor=owner,
                        spec=OfferSpec(
                            cluster_id=cluster.pk,
                            gpu_model=model,
                            gpus=hosts * per_host,
                            start=start,
                            end=start + dt.timedelta(days=3),
                            reserve_cents_per_gpu_hour=reserve[model.split("-")[0]],
                        ),
                    )
                    created["offers"] += 1
    for i, (team_name, email) in enumerate(BUYERS):
        owner = _user(email)
        team = _team(team_name, owner)
        trader = _user(f"trader{i}@demo.gridx.dev")
        services.member_add(team=team, actor=owner, user=trader, role=Role.TRADER)
        if Bid.objects.filter(team=team, status=BidStatus.OPEN).exists():
            continue
        asks = [
            (("H100-SXM-80GB", "H200-SXM-141GB"), 16, 8, 6, 260, True, ""),
            (("A100-SXM-80GB",), 8, 8, 12, 150, True, "alt"),
            (("L40S-48GB",), 8, 8, 12, 95, False, "alt"),
            (("B200-SXM-192GB",), 8, 4, 4, 420 + 10 * i, True, ""),
        ]
        for j, (models_, gpus, min_gpus, hours, limit, colocate, xor) in enumerate(asks):
            services.bid_place(
                team=team,
                actor=owner,
                spec=BidSpec(
                    gpu_models=models_,
                    gpus=gpus,
                    min_gpus=min_gpus,
                    duration_hours=hours,
                    earliest_start=start + dt.timedelta(hours=i),
                    latest_end=start + dt.timedelta(hours=i + hours + 24),
                    colocate=colocate,
                    limit_cents_per_gpu_hour=limit,
                    xor_group=xor,
                ),
                idempotency_key=f"seed-{start:%Y%m%d%H}-{j}",
            )
            created["bids"] += 1
    return created
