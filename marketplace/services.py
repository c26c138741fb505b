"""Every write to the market's core; each service owns its transaction.

Services take keyword-only arguments and raise errors from `marketplace.errors`. An `actor` of
None means a trusted caller whose rights were already checked (an API key's scopes, a command).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from . import grid, receipts, rules
from .errors import (
    Conflict,
    FieldError,
    IdempotencyConflict,
    InvalidInput,
    LimitExceeded,
    NotFound,
    PermissionDenied,
)
from .models import (
    Bid,
    BidStatus,
    Cluster,
    Gpu,
    GpuModel,
    Host,
    Interconnect,
    Membership,
    Offer,
    OfferStatus,
    Role,
    Team,
    User,
)
from .specs import BidSpec, OfferSpec

TRADING_ROLES = (Role.OWNER, Role.TRADER)
INVENTORY_ROLES = (Role.OWNER, Role.TRADER)


def _require_role(*, team: Team, actor: User | None, roles: Iterable[str], action: str) -> None:
    """Refuse an actor who is not a member of `team` with one of `roles`."""
    if actor is None:
        return
    role = Membership.objects.filter(team=team, user=actor).values_list("role", flat=True).first()
    if role is None:
        # Not a member: the team's objects do not exist for this actor.
        raise NotFound("team not found")
    if role not in roles:
        allowed = " or ".join(str(r) for r in roles)
        raise PermissionDenied(f"your role in {team.name} is {role}; {action} needs {allowed}")


# --- Teams ------------------------------------------------------------------------------------


@transaction.atomic
def team_create(*, name: str, owner: User) -> Team:
    """Create a team with `owner` as its first owner."""
    name = (name or "").strip()
    errors: list[FieldError] = []
    if not name:
        errors.append(FieldError("name", "required", "a team needs a name"))
    elif len(name) > 100:
        errors.append(FieldError("name", "too_long", "a team name is at most 100 characters"))
    slug = slugify(name)[:50]
    if name and not slug:
        errors.append(FieldError("name", "no_letters", "a team name needs at least one letter or digit"))
    if errors:
        raise InvalidInput(errors)
    if Team.objects.filter(Q(name__iexact=name) | Q(slug=slug)).exists():
        raise InvalidInput.one("name", "taken", f"a team named {name!r} already exists")
    try:
        with transaction.atomic():
            team = Team.objects.create(name=name, slug=slug)
    except IntegrityError:
        raise InvalidInput.one("name", "taken", f"a team named {name!r} already exists") from None
    Membership.objects.create(team=team, user=owner, role=Role.OWNER)
    return team


@transaction.atomic
def member_add(*, team: Team, actor: User | None, user: User, role: str) -> Membership:
    """Add `user` to `team` with `role`, or change their role; only owners may."""
    _require_role(team=team, actor=actor, roles=(Role.OWNER,), action="managing members")
    if role not in Role.values:
        raise InvalidInput.one("role", "invalid_choice", f"role must be one of {', '.join(Role.values)}")
    membership, created = Membership.objects.select_for_update().get_or_create(
        team=team, user=user, defaults={"role": role}
    )
    if not created and membership.role != role:
        if membership.role == Role.OWNER and role != Role.OWNER:
            owners = Membership.objects.select_for_update().filter(team=team, role=Role.OWNER).count()
            if owners <= 1:
                raise Conflict("a team must keep at least one owner", code="last_owner")
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


# --- Inventory --------------------------------------------------------------------------------


@transaction.atomic
def cluster_create(*, team: Team, actor: User | None, name: str, region: str, interconnect: str) -> Cluster:
    """Register a cluster of the team's hosts."""
    _require_role(team=team, actor=actor, roles=INVENTORY_ROLES, action="managing inventory")
    name, region = (name or "").strip(), (region or "").strip()
    errors: list[FieldError] = []
    if not name or len(name) > 50 or "/" in name:
        errors.append(FieldError("name", "invalid", "a cluster name is 1 to 50 characters without '/'"))
    if not region or len(region) > 50:
        errors.append(FieldError("region", "invalid", "a region is 1 to 50 characters, e.g. 'us-west'"))
    if interconnect not in Interconnect.values:
        errors.append(
            FieldError(
                "interconnect",
                "invalid_choice",
                f"interconnect must be one of {', '.join(Interconnect.values)}",
            )
        )
    if errors:
        raise InvalidInput(errors)
    if Cluster.objects.filter(team=team, name=name).exists():
        raise InvalidInput.one("name", "taken", f"your team already has a cluster named {name!r}")
    return Cluster.objects.create(team=team, name=name, region=region, interconnect=interconnect)


def _own_cluster(team: Team, cluster_id: int, field: str = "cluster") -> Cluster:
    cluster = Cluster.objects.filter(team=team, pk=cluster_id).first()
    if cluster is None:
        raise InvalidInput.one(field, "unknown_cluster", f"your team has no cluster with id {cluster_id}")
    return cluster


@transaction.atomic
def host_register(*, team: Team, actor: User | None, cluster_id: int, hostname: str) -> Host:
    """Declare a host in one of the team's clusters."""
    _require_role(team=team, actor=actor, roles=INVENTORY_ROLES, action="managing inventory")
    cluster = _own_cluster(team, cluster_id)
    hostname = (hostname or "").strip().lower()
    if not hostname or len(hostname) > 253 or any(c.isspace() for c in hostname):
        raise InvalidInput.one("hostname", "invalid", "a hostname is 1 to 253 characters without spaces")
    if Host.objects.filter(cluster=cluster, hostname=hostname).exists():
        raise InvalidInput.one("hostname", "taken", f"{hostname!r} is already in cluster {cluster.name}")
    return Host.objects.create(cluster=cluster, hostname=hostname)


@transaction.atomic
def gpu_register(*, team: Team, actor: User | None, host_id: int, gpu_model: str, uuid: str) -> Gpu:
    """Declare a GPU (by its NVML UUID) on one of the team's hosts."""
    _require_role(team=team, actor=actor, roles=INVENTORY_ROLES, action="managing inventory")
    host = Host.objects.filter(cluster__team=team, pk=host_id).first()
    errors: list[FieldError] = []
    if host is None:
        errors.append(FieldError("host", "unknown_host", f"your team has no host with id {host_id}"))
    model = GpuModel.objects.filter(name=gpu_model).first()
    if model is None:
        errors.append(FieldError("gpu_model", "unknown_model", f"unknown GPU model {gpu_model!r}"))
    uuid = (uuid or "").strip()
    if not (uuid.startswith(("GPU-", "MIG-")) and 8 <= len(uuid) <= 96):
        errors.append(
            FieldError("uuid", "invalid", "a GPU UUID looks like 'GPU-…' or 'MIG-…' as NVML reports it")
        )
    elif Gpu.objects.filter(uuid=uuid).exists():
        errors.append(FieldError("uuid", "taken", f"GPU {uuid} is already registered"))
    if errors:
        raise InvalidInput(errors)
    assert host is not None
    assert model is not None
    try:
        with transaction.atomic():
            return Gpu.objects.create(host=host, gpu_model=model, uuid=uuid)
    except IntegrityError:
        raise InvalidInput.one("uuid", "taken", f"GPU {uuid} is already registered") from None


# --- Offers -----------------------------------------------------------------------------------


def _peak_overlap(
    windows: Iterable[tuple[dt.datetime, dt.datetime, int]], start: dt.datetime, end: dt.datetime
) -> int:
    """Most GPUs committed at any moment of `[start, end)` by half-open `(s, e, gpus)` windows."""
    events: list[tuple[dt.datetime, int]] = []
    for s, e, gpus in windows:
        lo, hi = max(s, start), min(e, end)
        if lo < hi:
            events.append((lo, gpus))
            events.append((hi, -gpus))
    # Ends sort before starts at the same instant: half-open windows that touch do not overlap.
    events.sort(key=lambda ev: (ev[0], ev[1]))
    peak = level = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    return peak


def _offer_errors(spec: OfferSpec, *, now: dt.datetime) -> list[FieldError]:
    errors = rules.count_errors(
        "gpus", spec.gpus, minimum=1, maximum=int(settings.MAX_GPUS_PER_ORDER), noun="gpus"
    )
    errors += rules.price_errors("reserve_cents_per_gpu_hour", spec.reserve_cents_per_gpu_hour)
    errors += rules.window_errors("start", "end", spec.start, spec.end, now=now)
    return errors


@transaction.atomic
def offer_post(
    *, team: Team, actor: User | None, spec: OfferSpec, idempotency_key: str | None = None
) -> Offer:
    """List idle GPUs for sale; never more, at any moment, than the team has in that cluster."""
    _require_role(team=team, actor=actor, roles=TRADING_ROLES, action="posting offers")
    if idempotency_key and (
        existing := Offer.objects.filter(team=team, idempotency_key=idempotency_key).first()
    ):
        if _offer_spec(existing) != spec:
            raise IdempotencyConflict(idempotency_key)
        return existing
    now = timezone.now()
    errors = _offer_errors(spec, now=now)
    model = GpuModel.objects.filter(name=spec.gpu_model).first()
    if model is None:
        errors.append(FieldError("gpu_model", "unknown_model", f"unknown GPU model {spec.gpu_model!r}"))
    # Lock the cluster row: concurrent offers on one cluster serialise here, so the inventory
    # check below cannot be raced (two offers each seeing the other's GPUs as free).
    cluster = Cluster.objects.select_for_update().filter(team=team, pk=spec.cluster_id).first()
    if cluster is None:
        errors.append(
            FieldError("cluster", "unknown_cluster", f"your team has no cluster with id {spec.cluster_id}")
        )
    if errors:
        raise InvalidInput(errors)
    assert cluster is not None
    assert model is not None
    owned = Gpu.objects.filter(host__cluster=cluster, gpu_model=model).count()
    live = Offer.objects.filter(
        cluster=cluster, gpu_model=model, status=OfferStatus.LIVE, end__gt=spec.start, start__lt=spec.end
    ).values_list("start", "end", "gpus")
    committed = _peak_overlap(live, spec.start, spec.end)
    if committed + spec.gpus > owned:
        free = max(owned - committed, 0)
        raise LimitExceeded(
            f"cluster {cluster.name} has {owned} {model.name} GPUs and {committed} are already offered in "
            f"that window; at most {free} more can be offered",
            code="exceeds_inventory",
            field="gpus",
        )
    return Offer.objects.create(
        team=team,
        cluster=cluster,
        gpu_model=model,
        gpus=spec.gpus,
        start=spec.start,
        end=spec.end,
        reserve_cents_per_gpu_hour=spec.reserve_cents_per_gpu_hour,
        currency=settings.MARKET_CURRENCY,
        placed_by=actor,
        idempotency_key=idempotency_key or "",
    )


def _offer_spec(offer: Offer) -> OfferSpec:
    return OfferSpec(
        cluster_id=offer.cluster_id,
        gpu_model=offer.gpu_model.name,
        gpus=offer.gpus,
        start=offer.start,
        end=offer.end,
        reserve_cents_per_gpu_hour=offer.reserve_cents_per_gpu_hour,
    )


@transaction.atomic
def offer_cancel(*, team: Team, actor: User | None, offer_id: int) -> Offer:
    """Withdraw a live offer; cancelling twice is a no-op."""
    _require_role(team=team, actor=actor, roles=TRADING_ROLES, action="cancelling offers")
    offer = Offer.objects.select_for_update().filter(team=team, pk=offer_id).first()
    if offer is None:
        raise NotFound(f"offer {offer_id} not found")
    if offer.status == OfferStatus.CANCELLED:
        return offer
    changed = Offer.objects.filter(pk=offer.pk, status=OfferStatus.LIVE).update(
        status=OfferStatus.CANCELLED, cancelled_at=timezone.now()
    )
    if changed != 1:
        raise Conflict(f"offer {offer_id} is {offer.status} and can no longer be cancelled", code="not_live")
    offer.refresh_from_db()
    return offer


# --- Bids -------------------------------------------------------------------------------------


def bid_spec_errors(spec: BidSpec, *, now: dt.datetime, prefix: str = "") -> list[FieldError]:
    """Every rule a bid breaks, with field paths under `prefix` (e.g. 'bids[3].')."""
    known = set(GpuModel.objects.values_list("name", flat=True))
    max_gpus = int(settings.MAX_GPUS_PER_ORDER)
    max_hours = int(settings.MAX_HORIZON_DAYS) * 24
    p = prefix
    errors = rules.model_list_errors(f"{p}gpu_models", spec.gpu_models, known)
    errors += rules.count_errors(f"{p}gpus", spec.gpus, minimum=1, maximum=max_gpus, noun="gpus")
    min_errors = rules.count_errors(
        f"{p}min_gpus", spec.min_gpus, minimum=1, maximum=max_gpus, noun="min_gpus"
    )
    errors += min_errors
    if not min_errors and isinstance(spec.gpus, int) and spec.min_gpus > spec.gpus:
        errors.append(
            FieldError(
                f"{p}min_gpus",
                "min_above_gpus",
                f"min_gpus ({spec.min_gpus}) cannot exceed gpus ({spec.gpus})",
            )
        )
    duration_errors = rules.count_errors(
        f"{p}duration_hours", spec.duration_hours, minimum=1, maximum=max_hours, noun="duration_hours"
    )
    errors += duration_errors
    errors += rules.price_errors(f"{p}limit_cents_per_gpu_hour", spec.limit_cents_per_gpu_hour)
    errors += rules.xor_group_errors(f"{p}xor_group", spec.xor_group)
    errors += rules.window_errors(
        f"{p}earliest_start",
        f"{p}latest_end",
        spec.earliest_start,
        spec.latest_end,
        now=now,
        min_length=None if duration_errors else dt.timedelta(hours=spec.duration_hours),
        length_field=f"{p}duration_hours",
    )
    return errors


def _bid_spec(bid: Bid) -> BidSpec:
    return BidSpec(
        gpu_models=tuple(sorted(m.name for m in bid.gpu_models.all())),
        gpus=bid.gpus,
        min_gpus=bid.min_gpus,
        duration_hours=bid.duration_hours,
        earliest_start=bid.earliest_start,
        latest_end=bid.latest_end,
        colocate=bid.colocate,
        limit_cents_per_gpu_hour=bid.limit_cents_per_gpu_hour,
        xor_group=bid.xor_group,
    )


def _lock_team_for_bids(team: Team) -> None:
    # The open-bid limit is a count under the team row's lock: concurrent bids of one team
    # serialise here, so the count cannot be raced past the limit.
    Team.objects.select_for_update().filter(pk=team.pk).values_list("pk", flat=True).get()


def _check_open_bid_limit(team: Team, *, adding: int) -> None:
    limit = int(settings.MAX_OPEN_BIDS)
    open_now = Bid.objects.filter(team=team, status=BidStatus.OPEN).count()
    if open_now + adding > limit:
        raise LimitExceeded(
            f"your team has {open_now} open bids and the limit is {limit}; "
            "cancel some or wait for the next round",
            code="too_many_open_bids",
        )


def _create_bid(
    *, team: Team, actor: User | None, spec: BidSpec, idempotency_key: str, replaces: Bid | None = None
) -> Bid:
    models = list(GpuModel.objects.filter(name__in=spec.gpu_models))
    bid = Bid.objects.create(
        team=team,
        gpus=spec.gpus,
        min_gpus=spec.min_gpus,
        duration_hours=spec.duration_hours,
        earliest_start=spec.earliest_start,
        latest_end=spec.latest_end,
        colocate=spec.colocate,
        limit_cents_per_gpu_hour=spec.limit_cents_per_gpu_hour,
        currency=settings.MARKET_CURRENCY,
        xor_group=spec.xor_group,
        idempotency_key=idempotency_key,
        placed_by=actor,
        replaces=replaces,
        receipt_salt=receipts.new_salt(),
    )
    bid.gpu_models.set(models)
    bid.receipt = receipts.receipt_of(receipts.bid_receipt_document(bid, gpu_models=[m.name for m in models]))
    bid.save(update_fields=["receipt"])
    return bid


def _check_key(idempotency_key: str) -> None:
    if not idempotency_key or len(idempotency_key) > 255:
        raise InvalidInput.one("idempotency_key", "invalid", "an idempotency key is 1 to 255 characters")


@transaction.atomic
def bid_place(*, team: Team, actor: User | None, spec: BidSpec, idempotency_key: str) -> Bid:
    """Record a sealed bid; the same key with the same request returns the first bid."""
    _require_role(team=team, actor=actor, roles=TRADING_ROLES, action="placing bids")
    _check_key(idempotency_key)
    _lock_team_for_bids(team)
    if existing := Bid.objects.filter(team=team, idempotency_key=idempotency_key).first():
        if _bid_spec(existing) != spec.canonical():
            raise IdempotencyConflict(idempotency_key)
        return existing
    if errors := bid_spec_errors(spec, now=timezone.now()):
        raise InvalidInput(errors)
    _check_open_bid_limit(team, adding=1)
    return _create_bid(team=team, actor=actor, spec=spec, idempotency_key=idempotency_key)


@transaction.atomic
def bid_cancel(*, team: Team, actor: User | None, bid_id: int) -> Bid:
    """Withdraw an open bid; cancelling twice is a no-op, a decided bid cannot be cancelled."""
    _require_role(team=team, actor=actor, roles=TRADING_ROLES, action="cancelling bids")
    bid = Bid.objects.select_for_update().filter(team=team, pk=bid_id).first()
    if bid is None:
        raise NotFound(f"bid {bid_id} not found")
    if bid.status == BidStatus.CANCELLED:
        return bid
    changed = Bid.objects.filter(pk=bid.pk, status=BidStatus.OPEN).update(
        status=BidStatus.CANCELLED, cancelled_at=timezone.now()
    )
    if changed != 1:
        raise Conflict(f"bid {bid_id} is {bid.status} and can no longer be cancelled", code="not_open")
    bid.refresh_from_db()
    return bid


@transaction.atomic
def bid_replace(*, team: Team, actor: User | None, bid_id: int, spec: BidSpec, idempotency_key: str) -> Bid:
    """Swap an open bid for a new one atomically: either the new bid stands or the old one does."""
    _require_role(team=team, actor=actor, roles=TRADING_ROLES, action="replacing bids")
    _check_key(idempotency_key)
    _lock_team_for_bids(team)
    old = Bid.objects.select_for_update().filter(team=team, pk=bid_id).first()
    if old is None:
        raise NotFound(f"bid {bid_id} not found")
    if existing := Bid.objects.filter(team=team, idempotency_key=idempotency_key).first():
        if existing.replaces_id != old.pk or _bid_spec(existing) != spec.canonical():
            raise IdempotencyConflict(idempotency_key)
        return existing
    if old.status != BidStatus.OPEN:
        raise Conflict(f"bid {bid_id} is {old.status} and can no longer be replaced", code="not_open")
    if errors := bid_spec_errors(spec, now=timezone.now()):
        raise InvalidInput(errors)
    changed = Bid.objects.filter(pk=old.pk, status=BidStatus.OPEN).update(
        status=BidStatus.REPLACED, cancelled_at=timezone.now()
    )
    if changed != 1:
        raise Conflict(f"bid {bid_id} changed while replacing it; try again", code="not_open")
    return _create_bid(team=team, actor=actor, spec=spec, idempotency_key=idempotency_key, replaces=old)


@transaction.atomic
def orders_expire(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Retire orders whose window can no longer be met; safe to run any number of times."""
    next_slot = grid.slot_ceil(now or timezone.now())
    offers = Offer.objects.filter(status=OfferStatus.LIVE, end__lte=next_slot).update(
        status=OfferStatus.EXPIRED
    )
    bids = 0
    open_bids = Bid.objects.filter(status=BidStatus.OPEN)
    # A bid expires when even starting at the next slot it would end past its window. Durations
    # are few distinct values, so one UPDATE per duration beats loading every open bid.
    for hours in open_bids.values_list("duration_hours", flat=True).distinct().order_by():
        bids += open_bids.filter(
            duration_hours=hours, latest_end__lt=next_slot + dt.timedelta(hours=hours)
        ).update(status=BidStatus.EXPIRED)
    return {"offers": offers, "bids": bids}
