"""Every read of the market's core, with the acting team applied.

A selector never returns another team's orders or inventory: an object of another team is
"not found", exactly as if it did not exist.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from django.db.models import Case, Count, IntegerField, QuerySet, Sum, Value, When

from .errors import NotFound
from .models import (
    ApiKey,
    Bid,
    BidStatus,
    Cluster,
    Gpu,
    GpuModel,
    Host,
    Invitation,
    Membership,
    Offer,
    OfferStatus,
    Role,
    Team,
    User,
    WebhookDelivery,
    WebhookEndpoint,
)


def gpu_model_list() -> QuerySet[GpuModel]:
    """The public GPU catalogue."""
    return GpuModel.objects.all()


def team_list_for_user(*, user: User) -> QuerySet[Team]:
    """Teams the user belongs to."""
    return Team.objects.filter(memberships__user=user).distinct()


def team_get_for_user(*, user: User, team_id: int) -> Team:
    """One of the user's teams, or NotFound."""
    team = team_list_for_user(user=user).filter(pk=team_id).first()
    if team is None:
        raise NotFound(f"team {team_id} not found")
    return team


def membership_role(*, team: Team, user: User) -> str | None:
    """The user's role in the team, or None when not a member."""
    return Membership.objects.filter(team=team, user=user).values_list("role", flat=True).first()


def cluster_list(*, team: Team) -> QuerySet[Cluster]:
    return Cluster.objects.filter(team=team).select_related("team")


def cluster_get(*, team: Team, cluster_id: int) -> Cluster:
    cluster = cluster_list(team=team).filter(pk=cluster_id).first()
    if cluster is None:
        raise NotFound(f"cluster {cluster_id} not found")
    return cluster


def host_list(*, team: Team, cluster_id: int | None = None) -> QuerySet[Host]:
    hosts = Host.objects.filter(cluster__team=team).select_related("cluster")
    return hosts if cluster_id is None else hosts.filter(cluster_id=cluster_id)


def host_get(*, team: Team, host_id: int) -> Host:
    host = host_list(team=team).filter(pk=host_id).first()
    if host is None:
        raise NotFound(f"host {host_id} not found")
    return host


def gpu_list(*, team: Team, host_id: int | None = None) -> QuerySet[Gpu]:
    gpus = Gpu.objects.filter(host__cluster__team=team).select_related("host", "gpu_model")
    return gpus if host_id is None else gpus.filter(host_id=host_id)


def offer_list(*, team: Team, status: str | None = None) -> QuerySet[Offer]:
    """The team's own offers, newest first."""
    offers = Offer.objects.filter(team=team).select_related("cluster", "gpu_model")
    return offers if status is None else offers.filter(status=status)


def offer_get(*, team: Team, offer_id: int) -> Offer:
    offer = offer_list(team=team).filter(pk=offer_id).first()
    if offer is None:
        raise NotFound(f"offer {offer_id} not found")
    return offer


def bid_list(*, team: Team, status: str | None = None) -> QuerySet[Bid]:
    """The team's own sealed bids, newest first; no other team's bid is ever included."""
    bids = Bid.objects.filter(team=team).prefetch_related("gpu_models")
    return bids if status is None else bids.filter(status=status)


def bid_get(*, team: Team, bid_id: int) -> Bid:
    bid = bid_list(team=team).filter(pk=bid_id).first()
    if bid is None:
        raise NotFound(f"bid {bid_id} not found")
    return bid


def market_summary() -> dict[str, object]:
    """Public aggregates only: sealed bids are counted, never shown."""
    supply = (
        Offer.objects.filter(status=OfferStatus.LIVE)
        .values("gpu_model__name")
        .annotate(offers=Count("id"), gpus=Sum("gpus"))
        .order_by("gpu_model__name")
    )
    return {
        "teams": Team.objects.count(),
        "clusters": Cluster.objects.count(),
        "gpus": Gpu.objects.count(),
        "live_offers": Offer.objects.filter(status=OfferStatus.LIVE).count(),
        "open_bids": Bid.objects.filter(status=BidStatus.OPEN).count(),
        "supply": list(supply),
        "models": list(GpuModel.objects.annotate(n=Count("gpus")).values("name", "vendor", "memory_gb", "n")),
    }


# --- API keys and webhooks ---------------------------------------------------------------------


def api_key_list(*, team: Team) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(team=team)


def api_key_get(*, team: Team, key_id: int) -> ApiKey:
    key = api_key_list(team=team).filter(pk=key_id).first()
    if key is None:
        raise NotFound(f"API key {key_id} not found")
    return key


def webhook_endpoint_list(*, team: Team) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(team=team)


def webhook_endpoint_get(*, team: Team, endpoint_id: int) -> WebhookEndpoint:
    endpoint = webhook_endpoint_list(team=team).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return endpoint


def webhook_delivery_list(*, team: Team, endpoint_id: int | None = None) -> QuerySet[WebhookDelivery]:
    deliveries = WebhookDelivery.objects.filter(endpoint__team=team)
    return deliveries if endpoint_id is None else deliveries.filter(endpoint_id=endpoint_id)


def webhook_delivery_get(*, team: Team, delivery_id: int) -> WebhookDelivery:
    delivery = webhook_delivery_list(team=team).prefetch_related("attempt_log").filter(pk=delivery_id).first()
    if delivery is None:
        raise NotFound(f"webhook delivery {delivery_id} not found")
    return delivery


def cluster_list_public() -> QuerySet[Cluster]:
    """Every cluster with its public fields and GPU counts (no hosts, no UUIDs)."""
    return Cluster.objects.select_related("team").order_by("team__slug", "name")


def cluster_gpu_counts() -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {}
    rows = Gpu.objects.values("host__cluster_id", "gpu_model__name").annotate(n=Count("id"))
    for row in rows:
        counts.setdefault(row["host__cluster_id"], {})[row["gpu_model__name"]] = row["n"]
    return counts


# --- Members and invitations (web UI) ----------------------------------------------------------


def member_list(*, team: Team) -> QuerySet[Membership]:
    """The team's members with their users, owners first, then by email."""
    return (
        Membership.objects.filter(team=team)
        .select_related("user")
        .annotate(
            rank=Case(When(role=Role.OWNER, then=Value(0)), default=Value(1), output_field=IntegerField())
        )
        .order_by("rank", "user__email")
    )


def invitation_list_pending(*, team: Team, now: dt.datetime) -> QuerySet[Invitation]:
    """Invitations not yet used, withdrawn or expired."""
    return Invitation.objects.filter(
        team=team, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
    ).select_related("created_by")


def invitation_by_token(*, token: str) -> Invitation | None:
    """The invitation a link's token names (any state), with its team; None for an unknown token."""
    # The same hash as services.invitation_token_hash: only hashes are stored.
    digest = hashlib.sha256(token.encode()).hexdigest()
    return Invitation.objects.select_related("team").filter(token_sha256=digest).first()
