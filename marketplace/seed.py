"""A small, realistic demo market built through the services; safe to run again.

Six teams in four regions: three sellers with clusters of six GPU models, three buyers with bids, two
of them traded by the example bots (examples/bot.py) through an API key each. Running the seed again
creates nothing twice: it only tops up offers and bids that have been used up.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import uuid
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from config.demo import BID_SLACK_HOURS, BOT_KEYS_FILE, BOTS, DEMO_PASSWORD

from . import grid, services
from .models import ApiKey, Bid, BidStatus, Cluster, Gpu, Host, Offer, OfferStatus, Role, Scope, Team, User
from .specs import BidSpec, OfferSpec

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
STAFF_EMAIL = "staff@demo.gridx.dev"
BOT_KEY_NAME = "demo bot"


def bot_keys_path() -> Path:
    """Where the demo keeps its bots' API keys (shown once by the API, so the seed writes them down)."""
    return Path(settings.VAR_DIR) / BOT_KEYS_FILE


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


def _bot_keys(keys: dict[str, str]) -> dict[str, str]:
    """An API key per bot team; a key whose secret was lost (var/ wiped) is revoked and replaced."""
    created: dict[str, str] = {}
    for bot in BOTS:
        team = Team.objects.get(name=bot.team)
        live = ApiKey.objects.filter(team=team, name=BOT_KEY_NAME, revoked_at__isnull=True)
        secret = keys.get(team.slug, "")
        if secret and any(secret.startswith(f"gx_{k.prefix}_") for k in live):
            continue
        for stale in live:
            services.api_key_revoke(team=team, actor=None, key_id=stale.pk)
        _key, secret = services.api_key_create(
            team=team, actor=None, name=BOT_KEY_NAME, scopes=[Scope.MARKET_READ, Scope.BIDS_WRITE]
        )
        created[team.slug] = secret
    return created


def bot_keys_load() -> dict[str, str]:
    path = bot_keys_path()
    return json.loads(path.read_text()) if path.exists() else {}


def _bot_keys_save(keys: dict[str, str]) -> None:
    path = bot_keys_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Secrets: readable by this user only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(keys, fh, indent=1, sort_keys=True)


def staff_totp_secret() -> str:
    """The demo staff member's console TOTP secret (base32, for an authenticator app)."""
    from billing import totp  # the market never imports billing at module level

    device = totp.device_for(User.objects.get(email=STAFF_EMAIL))
    return base64.b32encode(totp.secret_of(device)).decode().rstrip("=")


def staff_totp_code() -> str:
    """The demo staff member's current console code (demo only: a real staff member has a phone)."""
    from billing import totp

    return totp.code_for(totp.device_for(User.objects.get(email=STAFF_EMAIL)))


def sellers_connect() -> int:
    """Give each demo seller a Stripe Connect account (the stand-in onboards it at once in the demo),
    so its payouts are sent rather than held; returns how many now have payouts enabled."""
    from billing import services as billing_services  # the market never imports billing at module level

    enabled = 0
    for team_name, _email, _clusters in SELLERS:
        team = Team.objects.get(name=team_name)
        billing_services.seller_account_ensure(team=team)
        account = billing_services.seller_account_refresh(team=team)
        enabled += bool(account and account.payouts_enabled)
    return enabled


def demo_market_seed(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Create the demo's users, teams, inventory, live orders and bot keys, unless they exist."""
    keys = bot_keys_load()
    created = _market_seed(now=now or timezone.now())
    staff_totp_secret()  # the staff member's console device, made once
    with transaction.atomic():
        new_keys = _bot_keys(keys)
    if new_keys:
        _bot_keys_save({**keys, **new_keys})
    created["api_keys"] = len(new_keys)
    return created


# How far past `now` the seeded orders may start at the earliest: the services check each order
# against their own clock, and a seed that began a moment before a slot boundary and posted its
# orders after it would have them start in the past (the demo failed so, seeding at 07:49:59 on
# a 5-minute grid; seeding takes a few seconds).
SEED_LEAD = dt.timedelta(minutes=1)


@transaction.atomic
def _market_seed(*, now: dt.datetime) -> dict[str, int]:
    start = grid.slot_ceil(now + SEED_LEAD)
    _user(STAFF_EMAIL, staff=True)
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
                            # As far ahead as the market allows (the demo's horizon is 2 days),
                            # from the clock the seed read: the services' horizon, read later, is
                            # never earlier.
                            end=grid.horizon_end(now),
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
                    latest_end=start + dt.timedelta(hours=i + hours + BID_SLACK_HOURS),
                    colocate=colocate,
                    limit_cents_per_gpu_hour=limit,
                    xor_group=xor,
                ),
                idempotency_key=f"seed-{start:%Y%m%d%H%M}-{j}",
            )
            created["bids"] += 1
    return created
