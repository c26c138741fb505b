"""Every write to the market's core; each service owns its transaction.

Services take keyword-only arguments and raise errors from `marketplace.errors`. An `actor` of
None means a trusted caller whose rights were already checked (an API key's scopes, a command).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from . import grid, receipts, rules, webhooks
from .db import prepared_cursor
from .errors import (
    Conflict,
    FieldError,
    IdempotencyConflict,
    InvalidInput,
    KeyRefused,
    LimitExceeded,
    NotFound,
    PermissionDenied,
)
from .models import (
    ApiKey,
    Bid,
    BidStatus,
    Cluster,
    DeliveryStatus,
    Gpu,
    GpuModel,
    Host,
    IdempotencyRecord,
    Interconnect,
    Invitation,
    Membership,
    Offer,
    OfferStatus,
    Role,
    Scope,
    Team,
    TeamOpenBids,
    User,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from .specs import BidSpec, OfferSpec
from .transactions import step

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


require_role = _require_role


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

# The GPU catalogue changes only by migration (0002_seed_gpu_models): each process reads it once,
# and again only when a bid names a model it has not seen (one added since), so placing a bid does
# not read it. A model removed since is caught when the bid's model links are inserted.
# The dict is replaced whole, never changed in place, so threads of one process share it safely.
_CATALOGUE: list[dict[str, GpuModel]] = [{}]


def _catalogue(wanted: Iterable[object] = ()) -> dict[str, GpuModel]:
    models = _CATALOGUE[0]
    if not models or any(isinstance(n, str) and n not in models for n in wanted):
        models = _CATALOGUE[0] = {m.name: m for m in GpuModel.objects.all()}
    return models


def gpu_model_names(wanted: Iterable[object] = ()) -> set[str]:
    """The catalogue's model names (cached per process; read again when `wanted` has a new name)."""
    return set(_catalogue(wanted))


def bid_spec_errors(
    spec: BidSpec, *, now: dt.datetime, prefix: str = "", known: set[str] | None = None
) -> list[FieldError]:
    """Every rule a bid breaks, with field paths under `prefix` (e.g. 'bids[3].').

    `known` is the catalogue's model names, when the caller checks many bids against one read.
    """
    if known is None:
        known = gpu_model_names(spec.gpu_models)
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


@functools.cache
def _team_lock_sql(with_key: bool) -> str:
    # FOR NO KEY UPDATE, not FOR UPDATE: it serialises the team's bid writers just the same, and
    # leaves foreign-key checks on the team row (FOR KEY SHARE) unblocked. The kill switch's second
    # update of the key row it revoked checks the key's team that way: under FOR UPDATE a bid
    # holding the team and waiting for the key would deadlock with it.
    quote = connection.ops.quote_name
    team = quote(Team._meta.db_table)
    locks = connection.features.has_select_for_update
    if not with_key:
        return f"SELECT id FROM {team} WHERE id = %s" + (" FOR NO KEY UPDATE" if locks else "")  # noqa: S608
    key = quote(ApiKey._meta.db_table)
    return (
        f"SELECT t.id, k.id, k.prefix, k.revoked_at, k.expires_at FROM {team} AS t"  # noqa: S608
        f" JOIN {key} AS k ON k.id = %s AND k.team_id = t.id WHERE t.id = %s"
        + (" FOR NO KEY UPDATE OF t FOR SHARE OF k" if locks else "")
    )


def _lock_team_for_bids(team: Team, api_key: ApiKey | None = None) -> None:
    """Lock the team row for this transaction and, for a bid placed with a key, the key row too.

    The open-bid limit is a count under the team row's lock: concurrent bids of one team
    serialise here, so the count cannot be raced past the limit.

    The key was checked when the request was authenticated, before this transaction. Its row is
    locked here (FOR SHARE) and checked again: the kill switch (`auctions.services.api_key_kill`)
    revokes the key under FOR UPDATE of that row and then cancels the key's open bids, so a bid
    either commits before the kill starts (and the kill cancels it) or waits here for the kill to
    commit and is refused (KeyRefused): no bid of a killed or revoked key stays open. A locked row
    is read as last committed, whatever this statement's snapshot.
    """
    with_key = api_key is not None
    params = [api_key.pk, team.pk] if api_key is not None else [team.pk]
    with prepared_cursor() as cursor:  # raw: the ORM's compile costs more than the statement here
        cursor.execute(_team_lock_sql(with_key), params)
        row = cursor.fetchone()
    if row is None:  # a key always belongs to the team it acts for: the key is gone
        if with_key:
            raise KeyRefused("unknown API key", code="bad_api_key")
        raise NotFound("team not found")
    if with_key:
        _, _, prefix, revoked_at, expires_at = row
        if (refusal := api_key_refusal(prefix, revoked_at, expires_at, now=timezone.now())) is not None:
            raise refusal


@functools.cache
def _book_sql(guards: tuple[str, ...]) -> str:
    quote = connection.ops.quote_name
    table = quote(Bid._meta.db_table)
    return (
        f"SELECT COALESCE((SELECT open_bids FROM {quote(TeamOpenBids._meta.db_table)}"  # noqa: S608
        f" WHERE team_id = %s), 0), ARRAY(SELECT id FROM {table} WHERE team_id = %s"
        " AND idempotency_key = ANY(%s::text[])),"
        " ARRAY(SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s))"
        + "".join(f", ({sql})" for sql in guards)
    )


@dataclass(frozen=True)
class _Book:
    """What a bid insert needs to know of its team's book, read under the team lock."""

    open_now: int  # the team's open bids
    existing: list[int]  # ids of its bids that hold one of the keys asked about
    ids: list[int] | None  # fresh bid ids from the sequence (None where the database cannot)
    guards: list[Any] | None  # each BID_GUARDS value, as the book query read it (None: not read)


def _book_for_insert(team: Team, *, keys: list[str], new: int) -> _Book:
    """Under the team lock, in one round trip on PostgreSQL: the team's open bids (the count the
    bid table's triggers keep in TeamOpenBids: one row read, however many bids are open), the ids
    of its bids holding any of `keys`, `new` fresh bid ids from the table's sequence, so a bid's
    receipt, which commits to its id, is written with the bid, and the value each BidGuard judges.
    On SQLite the bids are counted, up to MAX_OPEN_BIDS + 1, and the guards read their own values.

    A statement after the lock sees every bid committed by the transactions it waited for, which
    is why the count is not folded into the locking statement itself.
    """
    if connection.vendor == "postgresql":
        guards = tuple(guard.sql() for guard in BID_GUARDS)
        with prepared_cursor() as cursor:
            cursor.execute(
                _book_sql(guards),
                [team.pk, team.pk, _pg_array(keys), Bid._meta.db_table, new, *[team.pk] * len(guards)],
            )
            row = cursor.fetchone()
        return _Book(int(row[0]), list(row[1]), list(row[2]), list(row[3:]))
    cap = int(settings.MAX_OPEN_BIDS) + 1
    open_now = Bid.objects.filter(team=team, status=BidStatus.OPEN)[:cap].count()
    existing = list(Bid.objects.filter(team=team, idempotency_key__in=keys).values_list("pk", flat=True))
    return _Book(open_now, existing, None, None)


def _allocate_bid_ids(n: int) -> list[int] | None:
    """`n` fresh bid ids from the sequence, or None where the database cannot hand them out."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [Bid._meta.db_table, n],
        )
        return [int(r[0]) for r in cursor.fetchall()]


def _check_open_bid_limit(open_now: int, *, adding: int) -> None:
    limit = int(settings.MAX_OPEN_BIDS)
    if open_now + adding > limit:
        have = str(open_now) if open_now <= limit else f"more than {limit}"
        raise LimitExceeded(
            f"your team has {have} open bids and the limit is {limit}; "
            "cancel some or wait for the next round",
            code="too_many_open_bids",
        )


def _bids_with_models(ids: list[int]) -> list[Bid]:
    return list(
        Bid.objects.filter(pk__in=ids).select_related("team", "api_key").prefetch_related("gpu_models")
    )


def _exposure_cents(spec: BidSpec) -> int:
    """The most a bid can commit its team to: limit x GPUs x hours, in cents."""
    return spec.limit_cents_per_gpu_hour * spec.gpus * spec.duration_hours


@dataclass(frozen=True)
class BidGuard:
    """A check that an app downstream of the market (billing) registers at start-up, so the market
    need not import it, to refuse a team's new bids.

    The guard judges one value of the team's: `sql` is a scalar subquery of the team id (one `%s`)
    that PostgreSQL reads inside the book query (`_book_for_insert`, under the team lock), so a
    guard costs no round trip of its own; `read` fetches the same value on other databases (the
    SQLite demo). `check` raises a DomainError to refuse, or returns.
    """

    sql: Callable[[], str]
    read: Callable[[Team], Any]
    check: Callable[[Team, Any], None]


BID_GUARDS: list[BidGuard] = []


def _check_guards(team: Team, values: list[Any] | None = None) -> None:
    """Run every guard on its value: `values` as the book query read them, or read here."""
    for i, guard in enumerate(BID_GUARDS):
        guard.check(team, guard.read(team) if values is None else values[i])


def _check_exposure(api_key: ApiKey | None, specs: list[BidSpec], *, excluding: Bid | None = None) -> None:
    """Refuse bids that would take a key's open exposure past its cap (checked under the team lock)."""
    if api_key is None or api_key.exposure_cap_cents is None:
        return
    open_bids = Bid.objects.filter(api_key=api_key, status=BidStatus.OPEN)
    if excluding is not None:
        open_bids = open_bids.exclude(pk=excluding.pk)
    current = sum(
        limit * gpus * hours
        for limit, gpus, hours in open_bids.values_list("limit_cents_per_gpu_hour", "gpus", "duration_hours")
    )
    adding = sum(_exposure_cents(spec) for spec in specs)
    cap = api_key.exposure_cap_cents
    if current + adding > cap:
        raise LimitExceeded(
            f"this key's open bids commit {current} cents and these would add {adding}; the key's "
            f"exposure cap is {cap} cents (sum of limit x gpus x duration_hours over open bids)",
            code="exposure_cap_exceeded",
        )


def _new_bid(
    *,
    team: Team,
    actor: User | None,
    spec: BidSpec,
    idempotency_key: str,
    api_key: ApiKey | None,
    replaces: Bid | None = None,
) -> Bid:
    return Bid(
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
        api_key=api_key,
        replaces=replaces,
        receipt_salt=receipts.new_salt(),
    )


def _pg_array(values: Iterable[object]) -> str:
    """A PostgreSQL array literal ('{1,"a b",NULL}') of ints, booleans, text, datetimes or None.

    Sent as one text parameter and cast (`%s::bigint[]`): psycopg's own list adaptation inspects
    every element to pick a type, about 40 µs a list, which the bid path pays for every column.
    """
    out = []
    for v in values:
        if v is None:
            out.append("NULL")
        elif isinstance(v, bool):
            out.append("t" if v else "f")
        elif isinstance(v, int):
            out.append(str(int(v)))
        elif isinstance(v, dt.datetime):
            out.append(v.isoformat())
        elif isinstance(v, str):
            out.append('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            raise TypeError(f"no array literal for {type(v).__name__}")
    return "{" + ",".join(out) + "}"


def _model_pairs(bids: list[Bid], specs: list[BidSpec]) -> list[tuple[int, str]]:
    return [(bid.pk, n) for bid, spec in zip(bids, specs, strict=True) for n in sorted(set(spec.gpu_models))]


def _check_linked(linked: int, pairs: list[tuple[int, str]]) -> None:
    if linked != len(pairs):
        # The cached catalogue named a model the database no longer has.
        _CATALOGUE[0] = {}
        raise InvalidInput.one("gpu_models", "unknown_model", "a GPU model named here is no longer offered")


def _link_models(bids: list[Bid], specs: list[BidSpec]) -> None:
    """Insert the bids' model links through the ORM (databases other than PostgreSQL)."""
    pairs = _model_pairs(bids, specs)
    through = Bid.gpu_models.through
    by_name = {m.name: m.pk for m in GpuModel.objects.filter(name__in={n for _, n in pairs})}
    rows = [through(bid_id=b, gpumodel_id=by_name[n]) for b, n in pairs if n in by_name]
    through.objects.bulk_create(rows)
    _check_linked(len(rows), pairs)


# Bid columns whose Python values psycopg sends as they are (no Django conversion needed).
_PLAIN_COLUMNS = {
    "AutoField",
    "BigAutoField",
    "BigIntegerField",
    "BooleanField",
    "CharField",
    "DateTimeField",
    "ForeignKey",
    "IntegerField",
    "OneToOneField",
    "PositiveIntegerField",
    "TextField",
}


@functools.cache
def _insert_bids_plan(read: str | None) -> tuple[str, list[tuple[str, Any]], list[str]]:
    """The bid insert's SQL (with `read` as a third column), each column's attribute (with the
    field when its value needs Django's conversion), and the auto-now attributes: the same for
    every request, so built once."""
    fields = Bid._meta.concrete_fields
    quote = connection.ops.quote_name
    through = Bid.gpu_models.through
    names = ", ".join(quote(str(f.column)) for f in fields)
    arrays = ", ".join(f"%s::{f.db_type(connection) or 'text'}[]" for f in fields)
    link_names = ", ".join(
        quote(str(next(f.column for f in through._meta.concrete_fields if f.related_model is target)))
        for target in (Bid, GpuModel)
    )
    sql = (
        f"WITH b AS (INSERT INTO {quote(Bid._meta.db_table)} ({names})"  # noqa: S608
        f" SELECT * FROM unnest({arrays}) RETURNING 1),"
        f" m AS (INSERT INTO {quote(through._meta.db_table)} ({link_names})"
        " SELECT v.bid_id, g.id FROM unnest(%s::bigint[], %s::text[]) AS v(bid_id, name)"
        f" JOIN {quote(GpuModel._meta.db_table)} AS g ON g.name = v.name RETURNING 1)"
        " SELECT (SELECT count(*) FROM b), (SELECT count(*) FROM m)" + (f", ({read})" if read else "")
    )
    columns = [(f.attname, None if f.get_internal_type() in _PLAIN_COLUMNS else f) for f in fields]
    auto_now = [
        f.attname for f in fields if getattr(f, "auto_now_add", False) or getattr(f, "auto_now", False)
    ]
    return sql, columns, auto_now


def _insert_bids(bids: list[Bid], specs: list[BidSpec], read: str | None = None) -> Any:
    """Insert bids whose ids are set, with their model links, in one statement on PostgreSQL:
    `INSERT … SELECT FROM unnest(column arrays)` for the bids and, in the same statement, the links
    joined on the models' names (the link's foreign key to the bid is checked at commit). Returns
    the value of `read` (see `bid_place_reading`) read by that same statement, or None.

    Django's bulk_create prepares every field of every bid through the ORM (about 50 µs a bid),
    which a batch of 1,000 bids feels, and would need a second statement for the links.
    """
    sql, columns, auto_now = _insert_bids_plan(read)
    now = timezone.now()
    for attname in auto_now:
        for bid in bids:
            setattr(bid, attname, now)
    arrays = []
    for attname, field in columns:
        values = [getattr(bid, attname) for bid in bids]
        if field is not None:
            values = [field.get_db_prep_save(v, connection) for v in values]
        arrays.append(_pg_array(values))
    pairs = _model_pairs(bids, specs)
    with prepared_cursor() as cursor:
        cursor.execute(sql, [*arrays, _pg_array(b for b, _ in pairs), _pg_array(n for _, n in pairs)])
        row = cursor.fetchone()
    for bid in bids:
        bid._state.adding = False
        bid._state.db = connection.alias
    _check_linked(int(row[1]), pairs)
    return row[2] if read else None


def _read_value(read: str | None) -> Any:
    """`read` (a parameterless scalar subquery) in a statement of its own, or None."""
    if not read:
        return None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT ({read})")  # noqa: S608 - fixed SQL from the caller's code
        return cursor.fetchone()[0]


def _create_bids(
    *,
    team: Team,
    actor: User | None,
    specs: list[BidSpec],
    keys: list[str],
    api_key: ApiKey | None = None,
    replaces: Bid | None = None,
    ids: list[int] | None = None,
    read: str | None = None,
) -> tuple[list[Bid], Any]:
    """Insert bids with their model lists and receipts in a fixed number of queries; return them
    with the value of `read` read after the insert (in its statement on PostgreSQL), or None.

    The receipt commits to the bid's id: with `ids` taken from the sequence beforehand (see
    `_book_for_insert`) it is written with the bid; otherwise (SQLite) one UPDATE follows.
    """
    if ids is None:
        ids = _allocate_bid_ids(len(specs))
    bids = [
        _new_bid(team=team, actor=actor, spec=spec, idempotency_key=key, api_key=api_key, replaces=replaces)
        for spec, key in zip(specs, keys, strict=True)
    ]
    if ids is not None:
        for bid, spec, pk in zip(bids, specs, ids, strict=True):
            bid.pk = pk
            bid.receipt = receipts.receipt_of(
                receipts.bid_receipt_document(bid, gpu_models=sorted(set(spec.gpu_models)))
            )
        if connection.vendor == "postgresql":
            return bids, _insert_bids(bids, specs, read)
    Bid.objects.bulk_create(bids)
    _link_models(bids, specs)
    if ids is None:
        for bid, spec in zip(bids, specs, strict=True):
            bid.receipt = receipts.receipt_of(
                receipts.bid_receipt_document(bid, gpu_models=sorted(set(spec.gpu_models)))
            )
        Bid.objects.bulk_update(bids, ["receipt"], batch_size=1000)
    return bids, _read_value(read)


def _create_bid(
    *,
    team: Team,
    actor: User | None,
    spec: BidSpec,
    idempotency_key: str,
    api_key: ApiKey | None = None,
    replaces: Bid | None = None,
) -> Bid:
    return _create_bids(
        team=team, actor=actor, specs=[spec], keys=[idempotency_key], api_key=api_key, replaces=replaces
    )[0][0]


def _check_key(idempotency_key: str) -> None:
    if not idempotency_key or len(idempotency_key) > 255:
        raise InvalidInput.one("idempotency_key", "invalid", "an idempotency key is 1 to 255 characters")


@step
def bid_place(
    *, team: Team, actor: User | None, spec: BidSpec, idempotency_key: str, api_key: ApiKey | None = None
) -> Bid:
    """Record a sealed bid; the same key with the same request returns the first bid."""
    return bid_place_reading(
        team=team, actor=actor, spec=spec, idempotency_key=idempotency_key, api_key=api_key, read=None
    )[0]


@step
def bid_place_reading(
    *,
    team: Team,
    actor: User | None,
    spec: BidSpec,
    idempotency_key: str,
    api_key: ApiKey | None = None,
    read: str | None,
) -> tuple[Bid, Any]:
    """`bid_place`, and the value of `read` (a parameterless scalar subquery, fixed SQL) as the
    database sees it once the bid is written.

    On PostgreSQL `read` is a column of the insert statement itself, which takes the bid table's
    write lock (ROW EXCLUSIVE) before it takes its snapshot: whatever holds a lock that excludes
    bid writers (a round close's SHARE) has committed before `read` is evaluated, and cannot start
    until this transaction ends. auctions.services.bid_submit reads the open round this way.
    """
    _require_role(team=team, actor=actor, roles=TRADING_ROLES, action="placing bids")
    _check_key(idempotency_key)
    _lock_team_for_bids(team, api_key)
    book = _book_for_insert(team, keys=[idempotency_key], new=1)
    if book.existing:
        (bid,) = _bids_with_models(book.existing)
        if _bid_spec(bid) != spec.canonical():
            raise IdempotencyConflict(idempotency_key)
        return bid, _read_value(read)
    if errors := bid_spec_errors(spec, now=timezone.now()):
        raise InvalidInput(errors)
    _check_guards(team, book.guards)
    _check_open_bid_limit(book.open_now, adding=1)
    _check_exposure(api_key, [spec])
    (bid,), value = _create_bids(
        team=team, actor=actor, specs=[spec], keys=[idempotency_key], api_key=api_key, ids=book.ids, read=read
    )
    return bid, value


MAX_BATCH_BIDS = 1000


@step
def bid_place_batch(
    *,
    team: Team,
    actor: User | None,
    specs: list[BidSpec],
    idempotency_key: str,
    api_key: ApiKey | None = None,
) -> list[Bid]:
    """Record up to 1,000 bids at once: all of them, or none with every item's problems listed.

    Each bid's own idempotency key is `{idempotency_key}#{index}`, so a retried batch finds its bids.
    """
    return bid_place_batch_reading(
        team=team, actor=actor, specs=specs, idempotency_key=idempotency_key, api_key=api_key, read=None
    )[0]


@step
def bid_place_batch_reading(
    *,
    team: Team,
    actor: User | None,
    specs: list[BidSpec],
    idempotency_key: str,
    api_key: ApiKey | None = None,
    read: str | None,
) -> tuple[list[Bid], Any]:
    """`bid_place_batch`, and the value of `read` once the bids are written (see `bid_place_reading`)."""
    _require_role(team=team, actor=actor, roles=TRADING_ROLES, action="placing bids")
    _check_key(idempotency_key)
    if not specs:
        raise InvalidInput.one("bids", "empty", "a batch needs at least one bid")
    if len(specs) > MAX_BATCH_BIDS:
        raise InvalidInput.one(
            "bids", "too_many", f"a batch holds at most {MAX_BATCH_BIDS} bids, got {len(specs)}; split it"
        )
    keys = [f"{idempotency_key}#{i}" for i in range(len(specs))]
    _lock_team_for_bids(team, api_key)
    book = _book_for_insert(team, keys=keys, new=len(specs))
    if book.existing:
        existing = {b.idempotency_key: b for b in _bids_with_models(book.existing)}
        if len(existing) != len(specs) or any(
            _bid_spec(existing[key]) != spec.canonical() for key, spec in zip(keys, specs, strict=True)
        ):
            raise IdempotencyConflict(idempotency_key)
        return [existing[key] for key in keys], _read_value(read)
    now = timezone.now()
    known = gpu_model_names(n for spec in specs for n in spec.gpu_models)
    errors = [
        e
        for i, spec in enumerate(specs)
        for e in bid_spec_errors(spec, now=now, prefix=f"bids[{i}].", known=known)
    ]
    if errors:
        raise InvalidInput(errors)
    _check_guards(team, book.guards)
    _check_open_bid_limit(book.open_now, adding=len(specs))
    _check_exposure(api_key, specs)
    return _create_bids(
        team=team, actor=actor, specs=specs, keys=keys, api_key=api_key, ids=book.ids, read=read
    )


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


@step
def bid_replace(
    *,
    team: Team,
    actor: User | None,
    bid_id: int,
    spec: BidSpec,
    idempotency_key: str,
    api_key: ApiKey | None = None,
) -> Bid:
    """Swap an open bid for a new one atomically: either the new bid stands or the old one does."""
    _require_role(team=team, actor=actor, roles=TRADING_ROLES, action="replacing bids")
    _check_key(idempotency_key)
    _lock_team_for_bids(team, api_key)
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
    _check_guards(team)
    # The replaced bid's exposure leaves as the new one's arrives.
    _check_exposure(api_key, [spec], excluding=old)
    changed = Bid.objects.filter(pk=old.pk, status=BidStatus.OPEN).update(
        status=BidStatus.REPLACED, cancelled_at=timezone.now()
    )
    if changed != 1:
        raise Conflict(f"bid {bid_id} changed while replacing it; try again", code="not_open")
    return _create_bid(
        team=team, actor=actor, spec=spec, idempotency_key=idempotency_key, api_key=api_key, replaces=old
    )


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


# --- API keys ---------------------------------------------------------------------------------

KEY_ROLES = (Role.OWNER,)


def api_key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_refusal(
    prefix: str, revoked_at: dt.datetime | None, expires_at: dt.datetime | None, *, now: dt.datetime
) -> KeyRefused | None:
    """Why a key that exists no longer works (revoked, expired), or None when it works."""
    if revoked_at is not None:
        return KeyRefused(
            f"API key {prefix} was revoked at {revoked_at:%Y-%m-%dT%H:%M:%SZ}", code="key_revoked"
        )
    if expires_at is not None and expires_at <= now:
        return KeyRefused(f"API key {prefix} expired at {expires_at:%Y-%m-%dT%H:%M:%SZ}", code="key_expired")
    return None


@transaction.atomic
def api_key_create(
    *,
    team: Team,
    actor: User | None,
    name: str,
    scopes: Iterable[str],
    expires_at: dt.datetime | None = None,
    exposure_cap_cents: int | None = None,
    rate_limit_per_minute: int | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is never stored and never shown again."""
    _require_role(team=team, actor=actor, roles=KEY_ROLES, action="creating API keys")
    scopes = sorted(set(scopes))
    errors: list[FieldError] = []
    name = (name or "").strip()
    if not name or len(name) > 100:
        errors.append(FieldError("name", "invalid", "a key needs a name of 1 to 100 characters"))
    if not scopes:
        errors.append(FieldError("scopes", "required", f"pick at least one of {', '.join(Scope.values)}"))
    if unknown := [x for x in scopes if x not in Scope.values]:
        errors.append(
            FieldError(
                "scopes", "unknown_scope", f"unknown scopes {unknown}; known: {', '.join(Scope.values)}"
            )
        )
    if expires_at is not None and expires_at <= timezone.now():
        errors.append(FieldError("expires_at", "in_past", "a key must expire in the future"))
    if exposure_cap_cents is not None and (isinstance(exposure_cap_cents, bool) or exposure_cap_cents < 0):
        errors.append(FieldError("exposure_cap_cents", "negative", "the exposure cap is 0 or more cents"))
    if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
        errors.append(FieldError("rate_limit_per_minute", "too_small", "the rate limit is at least 1"))
    if errors:
        raise InvalidInput(errors)
    prefix = secrets.token_hex(6)
    raw = f"gx_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        team=team,
        name=name,
        prefix=prefix,
        key_sha256=api_key_hash(raw),
        scopes=scopes,
        created_by=actor,
        expires_at=expires_at,
        exposure_cap_cents=exposure_cap_cents,
        rate_limit_per_minute=rate_limit_per_minute,
    )
    return key, raw


@transaction.atomic
def api_key_revoke(*, team: Team, actor: User | None, key_id: int) -> ApiKey:
    """Stop a key from working; revoking twice is a no-op."""
    _require_role(team=team, actor=actor, roles=KEY_ROLES, action="revoking API keys")
    key = ApiKey.objects.select_for_update().filter(team=team, pk=key_id).first()
    if key is None:
        raise NotFound(f"API key {key_id} not found")
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


def api_key_touch(*, key: ApiKey, now: dt.datetime) -> None:
    """Record use; at most once a minute per key, so hot keys do not write on every request."""
    if key.last_used_at is None or now - key.last_used_at >= dt.timedelta(minutes=1):
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now


# --- Webhooks ---------------------------------------------------------------------------------

WEBHOOK_ROLES = (Role.OWNER, Role.TRADER)


def _webhook_url_errors(url: str) -> list[FieldError]:
    from urllib.parse import urlsplit

    parts = urlsplit(url or "")
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        return [
            FieldError("url", "invalid_url", "give an absolute http(s) URL, e.g. https://bot.example/hooks")
        ]
    if parts.scheme == "http" and not settings.WEBHOOKS_ALLOW_HTTP:
        return [FieldError("url", "https_required", "webhook URLs must use https")]
    return []


@transaction.atomic
def webhook_endpoint_create(
    *, team: Team, actor: User | None, url: str, events: Iterable[str], description: str = ""
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it with its signing secret (shown once, stored encrypted)."""
    _require_role(team=team, actor=actor, roles=WEBHOOK_ROLES, action="managing webhooks")
    events = sorted(set(events))
    errors = _webhook_url_errors(url)
    if not events:
        errors.append(FieldError("events", "required", f"pick events from {', '.join(WebhookEvent.values)}"))
    if unknown := [e for e in events if e not in WebhookEvent.values]:
        errors.append(
            FieldError(
                "events",
                "unknown_event",
                f"unknown events {unknown}; known: {', '.join(WebhookEvent.values)}",
            )
        )
    if len(description) > 200:
        errors.append(FieldError("description", "too_long", "a description is at most 200 characters"))
    if errors:
        raise InvalidInput(errors)
    if WebhookEndpoint.objects.filter(team=team, active=True).count() >= int(settings.MAX_WEBHOOK_ENDPOINTS):
        raise LimitExceeded(
            f"a team has at most {settings.MAX_WEBHOOK_ENDPOINTS} active webhook endpoints; delete one first",
            code="too_many_endpoints",
        )
    secret = webhooks.new_secret()
    endpoint = WebhookEndpoint.objects.create(
        team=team,
        url=url,
        events=events,
        secret_encrypted=webhooks.encrypt_secret(secret),
        description=description,
    )
    return endpoint, secret


@transaction.atomic
def webhook_endpoint_disable(*, team: Team, actor: User | None, endpoint_id: int) -> WebhookEndpoint:
    _require_role(team=team, actor=actor, roles=WEBHOOK_ROLES, action="managing webhooks")
    endpoint = WebhookEndpoint.objects.select_for_update().filter(team=team, pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    if endpoint.active:
        endpoint.active = False
        endpoint.disabled_at = timezone.now()
        endpoint.save(update_fields=["active", "disabled_at"])
    return endpoint


def _schedule_delivery(delivery_id: int) -> None:
    from .tasks import webhook_deliver_task

    transaction.on_commit(lambda: webhook_deliver_task.delay(delivery_id))


@transaction.atomic
def webhook_event_emit(
    *, team: Team, event: str, event_id: str, data: dict[str, Any]
) -> list[WebhookDelivery]:
    """Queue one delivery of an event to each of the team's endpoints that asked for it.

    `event_id` is derived from the cause (e.g. "round:7:bid:42"), so emitting twice delivers once.
    """
    body = json.dumps(
        {"id": event_id, "type": event, "created": int(time.time()), "team": team.slug, "data": data},
        sort_keys=True,
        separators=(",", ":"),
    )
    created: list[WebhookDelivery] = []
    for endpoint in WebhookEndpoint.objects.filter(team=team, active=True):
        if event not in endpoint.events:
            continue
        delivery, new = WebhookDelivery.objects.get_or_create(
            endpoint=endpoint,
            event_id=event_id,
            replay_of=None,
            defaults={"event": event, "payload": body, "next_attempt_at": timezone.now()},
        )
        if new:
            created.append(delivery)
            _schedule_delivery(delivery.pk)
    return created


def _backoff_seconds(attempt: int) -> int:
    """Seconds before retry number `attempt` (1-based): exponential from the base, capped."""
    base = int(settings.WEBHOOK_RETRY_BASE_SECONDS)
    return int(min(base * 2 ** (attempt - 1), int(settings.WEBHOOK_RETRY_MAX_SECONDS)))


def webhook_attempt(*, delivery_id: int, now: dt.datetime | None = None) -> WebhookDelivery | None:
    """Send one pending delivery once, if it is due; record the attempt and schedule what follows.

    Returns the delivery after the attempt, or None when it was not due (already delivered, given
    up, or claimed by another worker). The HTTP call happens outside any transaction.
    """
    now = now or timezone.now()
    # Claim: push next_attempt_at past the request timeout, so a second worker skips it.
    claim_until = now + dt.timedelta(seconds=int(settings.WEBHOOK_TIMEOUT_SECONDS) + 30)
    claimed = WebhookDelivery.objects.filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        pk=delivery_id,
        status=DeliveryStatus.PENDING,
    ).update(next_attempt_at=claim_until)
    if claimed != 1:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    body = delivery.payload.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Gridx-Webhooks/1",
        "Gridx-Event": delivery.event,
        "Gridx-Delivery": str(delivery.pk),
        webhooks.SIGNATURE_HEADER: webhooks.sign(
            webhooks.decrypt_secret(delivery.endpoint.secret_encrypted), body
        ),
    }
    status_code: int | None = None
    response = ""
    error = ""
    started = time.monotonic()
    try:
        reply = httpx.post(
            delivery.endpoint.url,
            content=body,
            headers=headers,
            timeout=float(settings.WEBHOOK_TIMEOUT_SECONDS),
            follow_redirects=False,
        )
        status_code = reply.status_code
        response = reply.text[:2000]
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    elapsed_ms = int((time.monotonic() - started) * 1000)
    ok = status_code is not None and 200 <= status_code < 300
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery_id)
        delivery.attempts += 1
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=delivery.attempts,
            at=now,
            status_code=status_code,
            response=response,
            error=error,
            duration_ms=elapsed_ms,
        )
        delivery.last_status_code = status_code
        delivery.last_response = response
        delivery.last_error = error
        if ok:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.delivered_at = timezone.now()
            delivery.next_attempt_at = None
        elif delivery.attempts >= int(settings.WEBHOOK_MAX_ATTEMPTS):
            delivery.status = DeliveryStatus.FAILED
            delivery.next_attempt_at = None
        else:
            delivery.next_attempt_at = now + dt.timedelta(seconds=_backoff_seconds(delivery.attempts))
        delivery.save()
    return delivery


def webhook_deliveries_due(*, now: dt.datetime | None = None) -> list[int]:
    """Pending deliveries whose next attempt is due (the sweep behind lost retries)."""
    now = now or timezone.now()
    return list(
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:500]
    )


@transaction.atomic
def webhook_delivery_replay(*, team: Team, actor: User | None, delivery_id: int) -> WebhookDelivery:
    """Send a past delivery again, as a new delivery with the same event id and body."""
    _require_role(team=team, actor=actor, roles=WEBHOOK_ROLES, action="replaying webhooks")
    original = (
        WebhookDelivery.objects.filter(endpoint__team=team, pk=delivery_id).select_related("endpoint").first()
    )
    if original is None:
        raise NotFound(f"webhook delivery {delivery_id} not found")
    if not original.endpoint.active:
        raise Conflict(
            f"endpoint {original.endpoint_id} is disabled; enable or recreate it first", code="disabled"
        )
    replay = WebhookDelivery.objects.create(
        endpoint=original.endpoint,
        event=original.event,
        event_id=original.event_id,
        payload=original.payload,
        replay_of=original.replay_of or original,
        next_attempt_at=timezone.now(),
    )
    _schedule_delivery(replay.pk)
    return replay


# --- Idempotent responses ---------------------------------------------------------------------


def idempotency_prune(*, now: dt.datetime | None = None) -> int:
    """Forget stored responses older than IDEMPOTENCY_TTL_HOURS."""
    cutoff = (now or timezone.now()) - dt.timedelta(hours=int(settings.IDEMPOTENCY_TTL_HOURS))
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted


# --- Accounts, members and invitations (web UI) ------------------------------------------------

INVITATION_TTL = dt.timedelta(days=7)


def invitation_token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@transaction.atomic
def account_create(*, email: str, password: str) -> User:
    """Sign a person up by email; the password must pass the configured validators."""
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    email = (email or "").strip().lower()
    errors: list[FieldError] = []
    try:
        validate_email(email)
    except ValidationError:
        errors.append(FieldError("email", "invalid", "enter an email address such as ada@example.com"))
    else:
        if User.objects.filter(email__iexact=email).exists():
            errors.append(
                FieldError("email", "taken", "an account with this email exists already; log in instead")
            )
    try:
        validate_password(password or "", user=User(email=email))
    except ValidationError as refused:
        errors.extend(FieldError("password", "weak", message) for message in refused.messages)
    if errors:
        raise InvalidInput(errors)
    try:
        with transaction.atomic():
            return User.objects.create_user(email=email, password=password)
    except IntegrityError:
        raise InvalidInput.one("email", "taken", "an account with this email exists already") from None


@transaction.atomic
def invitation_create(
    *, team: Team, actor: User | None, email: str, role: str, now: dt.datetime | None = None
) -> tuple[Invitation, str]:
    """Invite `email` to `team` with `role`; returns the invitation and its raw token (shown once)."""
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    _require_role(team=team, actor=actor, roles=(Role.OWNER,), action="inviting members")
    email = (email or "").strip().lower()
    errors: list[FieldError] = []
    try:
        validate_email(email)
    except ValidationError:
        errors.append(FieldError("email", "invalid", "enter an email address such as ada@example.com"))
    if role not in Role.values:
        errors.append(FieldError("role", "invalid_choice", f"choose one of {', '.join(Role.values)}"))
    if not errors and Membership.objects.filter(team=team, user__email__iexact=email).exists():
        errors.append(FieldError("email", "member", f"{email} is already a member of {team.name}"))
    if errors:
        raise InvalidInput(errors)
    raw = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        team=team,
        email=email,
        role=role,
        token_sha256=invitation_token_hash(raw),
        created_by=actor,
        expires_at=(now or timezone.now()) + INVITATION_TTL,
    )
    return invitation, raw


@transaction.atomic
def invitation_accept(*, token: str, user: User, now: dt.datetime | None = None) -> Membership:
    """Join the invitation's team with its role; the link works once, before it expires, for its email."""
    now = now or timezone.now()
    invitation = (
        Invitation.objects.select_for_update()
        .select_related("team")
        .filter(token_sha256=invitation_token_hash(token or ""))
        .first()
    )
    if invitation is None:
        raise NotFound("this invitation link is not valid; ask the team's owner for a new one")
    if invitation.accepted_at is not None:
        raise Conflict("this invitation link has been used already; each link works once", code="used")
    if invitation.revoked_at is not None:
        raise Conflict("this invitation was withdrawn by the team's owner", code="revoked")
    if invitation.expires_at <= now:
        raise Conflict(
            f"this invitation expired on {invitation.expires_at:%Y-%m-%d %H:%M} UTC; "
            "ask the team's owner for a new link",
            code="expired",
        )
    if invitation.email != user.email.lower():
        raise PermissionDenied(
            f"this invitation is for {invitation.email}, but you are signed in as {user.email}; "
            "log in with the invited address"
        )
    if Membership.objects.filter(team=invitation.team, user=user).exists():
        raise Conflict(f"you are already a member of {invitation.team.name}", code="member")
    membership = Membership.objects.create(team=invitation.team, user=user, role=invitation.role)
    invitation.accepted_at = now
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    return membership


@transaction.atomic
def invitation_revoke(*, team: Team, actor: User | None, invitation_id: int) -> Invitation:
    """Withdraw a pending invitation so its link stops working."""
    _require_role(team=team, actor=actor, roles=(Role.OWNER,), action="withdrawing invitations")
    invitation = Invitation.objects.select_for_update().filter(team=team, pk=invitation_id).first()
    if invitation is None:
        raise NotFound(f"invitation {invitation_id} not found")
    if invitation.accepted_at is None and invitation.revoked_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
    return invitation


def _team_membership(team: Team, membership_id: int) -> Membership:
    membership = (
        Membership.objects.select_for_update()
        .select_related("user")
        .filter(team=team, pk=membership_id)
        .first()
    )
    if membership is None:
        raise NotFound(f"member {membership_id} not found")
    return membership


@transaction.atomic
def member_role_change(*, team: Team, actor: User | None, membership_id: int, role: str) -> Membership:
    """Change a member's role; the last owner cannot stop being one."""
    _require_role(team=team, actor=actor, roles=(Role.OWNER,), action="changing roles")
    membership = _team_membership(team, membership_id)
    return member_add(team=team, actor=None, user=membership.user, role=role)


@transaction.atomic
def member_remove(*, team: Team, actor: User | None, membership_id: int) -> Membership:
    """Remove a member (owners), or leave the team yourself; a team always keeps an owner."""
    membership = _team_membership(team, membership_id)
    if actor is None or membership.user_id != actor.pk:
        _require_role(team=team, actor=actor, roles=(Role.OWNER,), action="removing members")
    if membership.role == Role.OWNER:
        # Lock every owner row so two owners removing each other cannot both succeed.
        owners = list(Membership.objects.select_for_update().filter(team=team, role=Role.OWNER))
        if len(owners) <= 1:
            raise Conflict(
                f"{membership.user.email} is the only owner of {team.name}; "
                "make another member an owner first",
                code="last_owner",
            )
    membership.delete()
    return membership
