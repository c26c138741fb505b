"""The market's core data: users, teams, the GPU catalogue, sellers' inventory, offers and bids.

Structural rules live in database constraints so that a write that bypasses the services still
cannot store nonsense; rules that need context (the clock, inventory, limits) live in services.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.base_user import BaseUserManager
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import F, Q


class UserManager(BaseUserManager["User"]):
    """Users log in by email; there is no username."""

    use_in_migrations = True

    def _create(self, email: str, password: str | None, **extra: Any) -> User:
        if not email:
            raise ValueError("email is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self._create(email, password, **extra)


class User(AbstractUser):
    """A person; logs in with their email address."""

    username = None  # type: ignore[assignment]
    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    objects: ClassVar[UserManager] = UserManager()  # type: ignore[assignment]

    def __str__(self) -> str:
        return self.email


class Team(models.Model):
    """A company or group that buys and sells GPU-hours; every order belongs to one team."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=50, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    TRADER = "trader", "Trader"
    VIEWER = "viewer", "Viewer"
    BILLING = "billing", "Billing"


class Membership(models.Model):
    """A user's role in a team: owners manage, traders bid and offer, viewers read, billing pays."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="membership_unique_team_user"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class GpuModel(models.Model):
    """A GPU model in the catalogue; `name` is the identifier used in round files."""

    name = models.CharField(max_length=64, unique=True)
    vendor = models.CharField(max_length=32)
    memory_gb = models.PositiveIntegerField()
    display_name = models.CharField(max_length=100)

    class Meta:
        ordering = ["vendor", "name"]
        constraints = [models.CheckConstraint(condition=Q(memory_gb__gt=0), name="gpumodel_memory_positive")]

    def __str__(self) -> str:
        return self.name


class Interconnect(models.TextChoices):
    INFINIBAND = "infiniband", "InfiniBand"
    ROCE = "roce", "RoCE"
    ETHERNET = "ethernet", "Ethernet"
    NVLINK = "nvlink", "NVLink switch"


class Cluster(models.Model):
    """A seller's group of hosts in one place; colocated bids are served from one cluster."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="clusters")
    name = models.CharField(max_length=50)
    region = models.CharField(max_length=50)
    interconnect = models.CharField(max_length=16, choices=Interconnect.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="cluster_unique_team_name"),
            models.CheckConstraint(
                condition=Q(interconnect__in=Interconnect.values), name="cluster_interconnect_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.team.slug}/{self.name}"

    @property
    def code(self) -> str:
        """Globally unique name used in round files and the price index."""
        return f"{self.team.slug}/{self.name}"


class Host(models.Model):
    """A machine in a seller's cluster; its GPUs are metered by the agent enrolled on it."""

    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="hosts")
    hostname = models.CharField(max_length=253)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["cluster_id", "hostname"]
        constraints = [
            models.UniqueConstraint(fields=["cluster", "hostname"], name="host_unique_cluster_hostname"),
        ]

    def __str__(self) -> str:
        return self.hostname


class Gpu(models.Model):
    """One physical GPU (or MIG instance), known by its NVML UUID, which is unique worldwide."""

    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="gpus")
    gpu_model = models.ForeignKey(GpuModel, on_delete=models.PROTECT, related_name="gpus")
    uuid = models.CharField(max_length=96, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["host_id", "uuid"]
        constraints = [
            models.CheckConstraint(
                condition=Q(uuid__startswith="GPU-") | Q(uuid__startswith="MIG-"), name="gpu_uuid_nvml_form"
            ),
        ]

    def __str__(self) -> str:
        return self.uuid


class OfferStatus(models.TextChoices):
    LIVE = "live", "Live"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"


class Offer(models.Model):
    """GPUs of one model in one cluster, idle in `[start, end)`, let go at no less than the reserve.

    Units: `reserve_cents_per_gpu_hour` is integer cents per GPU-hour.
    """

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="offers")
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="offers")
    gpu_model = models.ForeignKey(GpuModel, on_delete=models.PROTECT, related_name="offers")
    gpus = models.PositiveIntegerField()
    start = models.DateTimeField()
    end = models.DateTimeField()
    reserve_cents_per_gpu_hour = models.BigIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    status = models.CharField(max_length=16, choices=OfferStatus.choices, default=OfferStatus.LIVE)
    placed_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    idempotency_key = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["cluster", "gpu_model", "status"])]
        constraints = [
            models.CheckConstraint(condition=Q(gpus__gt=0), name="offer_gpus_positive"),
            models.CheckConstraint(condition=Q(start__lt=F("end")), name="offer_start_before_end"),
            models.CheckConstraint(
                condition=Q(reserve_cents_per_gpu_hour__gt=0), name="offer_reserve_positive"
            ),
            models.CheckConstraint(condition=Q(status__in=OfferStatus.values), name="offer_status_valid"),
            models.UniqueConstraint(
                fields=["team", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="offer_unique_team_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"offer {self.pk}: {self.gpus}x {self.gpu_model_id} in {self.cluster_id}"


class BidStatus(models.TextChoices):
    OPEN = "open", "Open"
    CANCELLED = "cancelled", "Cancelled"
    REPLACED = "replaced", "Replaced"
    WON = "won", "Won"
    LOST = "lost", "Lost"
    EXPIRED = "expired", "Expired"


OPEN_BID_STATUSES = (BidStatus.OPEN,)


class Bid(models.Model):
    """A sealed request for `gpus` (at least `min_gpus`) of one of `gpu_models` for
    `duration_hours` contiguous hours inside `[earliest_start, latest_end)`.

    Units: `limit_cents_per_gpu_hour` is integer cents per GPU-hour; the most the bid can pay is
    limit × GPUs × hours. Bids sharing an `xor_group` label within a team are alternatives.
    """

    # No single-column index on team or api_key: the (team, status) and (api_key, status) indexes
    # below serve those lookups, and every bid insert maintained two more indexes for nothing.
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="bids", db_index=False)
    gpu_models = models.ManyToManyField(GpuModel, related_name="bids")
    gpus = models.PositiveIntegerField()
    min_gpus = models.PositiveIntegerField()
    duration_hours = models.PositiveIntegerField()
    earliest_start = models.DateTimeField()
    latest_end = models.DateTimeField()
    colocate = models.BooleanField(default=True)
    limit_cents_per_gpu_hour = models.BigIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    xor_group = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=BidStatus.choices, default=BidStatus.OPEN)
    idempotency_key = models.CharField(max_length=255)
    placed_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The API key that placed it: the key's exposure cap counts its open bids, its kill switch
    # cancels them.
    api_key = models.ForeignKey(
        "ApiKey", null=True, blank=True, on_delete=models.PROTECT, related_name="bids", db_index=False
    )
    replaces = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaced_by"
    )
    # The sealed-bid commitment: SHA-256 of the bid's canonical JSON with a secret salt, given to
    # the owner; rounds publish the Merkle root of their bids' receipts (docs/rounds.md).
    receipt_salt = models.CharField(max_length=32, blank=True, default="")
    receipt = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["team", "status"]), models.Index(fields=["api_key", "status"])]
        constraints = [
            models.CheckConstraint(condition=Q(gpus__gt=0), name="bid_gpus_positive"),
            models.CheckConstraint(condition=Q(min_gpus__gt=0), name="bid_min_gpus_positive"),
            models.CheckConstraint(condition=Q(min_gpus__lte=F("gpus")), name="bid_min_gpus_le_gpus"),
            models.CheckConstraint(condition=Q(duration_hours__gt=0), name="bid_duration_positive"),
            models.CheckConstraint(
                condition=Q(earliest_start__lt=F("latest_end")), name="bid_start_before_end"
            ),
            models.CheckConstraint(condition=Q(limit_cents_per_gpu_hour__gt=0), name="bid_limit_positive"),
            models.CheckConstraint(condition=Q(status__in=BidStatus.values), name="bid_status_valid"),
            models.UniqueConstraint(
                fields=["team", "idempotency_key"], name="bid_unique_team_idempotency_key"
            ),
        ]

    def __str__(self) -> str:
        return f"bid {self.pk}: {self.gpus}x for {self.duration_hours}h"


# --- The API: keys, idempotent responses, webhooks ---------------------------------------------


class Scope(models.TextChoices):
    MARKET_READ = "market:read", "Read the market and your own orders"
    BIDS_WRITE = "bids:write", "Place, replace and cancel bids"
    OFFERS_WRITE = "offers:write", "Post and cancel offers"
    INVENTORY_WRITE = "inventory:write", "Manage clusters, hosts and GPUs"
    BILLING_READ = "billing:read", "Read statements and invoices"
    WEBHOOKS_WRITE = "webhooks:write", "Manage webhook endpoints and replay deliveries"


class ApiKey(models.Model):
    """A team's key for bots. The secret is shown once; only its SHA-256 is stored.

    A key is `gx_<prefix>_<secret>`: the prefix finds the row, the hash of the whole key proves it.
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    key_sha256 = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Risk controls: the most the key's open bids may commit (sum of limit x GPUs x hours), in
    # cents; null means no cap beyond the team's limits. A killed key is revoked and its bids
    # cancelled.
    exposure_cap_cents = models.BigIntegerField(null=True, blank=True)
    killed_at = models.DateTimeField(null=True, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(exposure_cap_cents__isnull=True) | Q(exposure_cap_cents__gte=0),
                name="apikey_exposure_cap_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"key {self.prefix} ({self.name})"


class TeamOpenBids(models.Model):
    """How many open bids a team has, kept by PostgreSQL triggers on the bid table (migration
    0007), so the open-bid limit reads one row instead of counting up to MAX_OPEN_BIDS bids on
    every bid request. No Python code writes it: every change of a bid's status, by any path
    (services, bulk updates, the admin, raw SQL), moves it in the same transaction. On SQLite (the
    demo) there are no triggers and the limit counts the bids.
    """

    team = models.OneToOneField(Team, primary_key=True, on_delete=models.CASCADE, related_name="+")
    open_bids = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(open_bids__gte=0), name="teamopenbids_not_negative"),
        ]

    def __str__(self) -> str:
        return f"team {self.team_id}: {self.open_bids} open bids"


class IdempotencyRecord(models.Model):
    """The stored response to a request made with an `Idempotency-Key`, replayed on a retry."""

    # No index of its own on team: the (team, key) unique constraint serves team lookups.
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=300)
    request_sha256 = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(default=0)
    response_body = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "key"], name="idempotency_unique_team_key")]
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"{self.method} {self.path} key {self.key}"


class WebhookEvent(models.TextChoices):
    ROUND_CLEARED = "round.cleared", "A round you took part in cleared"
    BID_WON = "bid.won", "A bid won"
    BID_LOST = "bid.lost", "A bid lost"
    LEASE_STARTED = "lease.started", "A lease started"
    LEASE_ENDED = "lease.ended", "A lease ended"
    INVOICE_PAID = "invoice.paid", "An invoice was paid"
    INVOICE_PAYMENT_FAILED = "invoice.payment_failed", "An invoice payment failed"
    PAYOUT_SENT = "payout.sent", "A payout was sent"


class WebhookEndpoint(models.Model):
    """A team's URL for events. The signing secret is stored encrypted (it must be recoverable to
    sign with), with a key derived from SECRET_KEY."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    events = models.JSONField(default=list)
    secret_encrypted = models.TextField()
    active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    disabled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"webhook {self.pk} -> {self.url}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up)"


class WebhookDelivery(models.Model):
    """One event to one endpoint, with every attempt's outcome; unique per (endpoint, event id)."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    event_id = models.CharField(max_length=200)
    payload = models.TextField()
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_response = models.TextField(blank=True, default="")
    last_error = models.CharField(max_length=300, blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    replay_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replays"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event_id"],
                condition=Q(replay_of__isnull=True),
                name="webhook_delivery_unique_event",
            ),
            models.CheckConstraint(
                condition=Q(status__in=DeliveryStatus.values), name="delivery_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.event_id} -> endpoint {self.endpoint_id}"


class WebhookAttempt(models.Model):
    """One HTTP attempt of a delivery: what we sent when, and what came back."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response = models.TextField(blank=True, default="")
    error = models.CharField(max_length=300, blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_unique_number")
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"


class Invitation(models.Model):
    """An owner's invitation for one email address to join a team with a role.

    The link's token is shown once to the owner and stored only as its SHA-256, so a leaked
    database cannot be turned into working links; it works once and until `expires_at`.
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices)
    token_sha256 = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["team", "-created_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(role__in=Role.values), name="invitation_role_valid"),
        ]

    def __str__(self) -> str:
        return f"invitation of {self.email} to {self.team} ({self.role})"
