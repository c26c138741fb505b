"""Rounds and what clearing them produces: leases, outcomes, fills, the price index, notifications.

A round's snapshot (gridx.round/v1) and result (gridx.result/v1) are stored as the exact bytes that
were hashed, so anyone can re-hash and re-clear them.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from marketplace.models import Bid, Gpu, GpuModel, Offer, Team


class RoundStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"
    CLEARING = "clearing", "Clearing"
    CLEARED = "cleared", "Cleared"
    FAILED = "failed", "Failed"


class Round(models.Model):
    """One sealed-bid auction round: open until `cutoff_at`, then frozen, cleared and published.

    Its delivery horizon is `slots` slots of `slot_minutes` from `horizon_start`.
    """

    number = models.PositiveIntegerField(unique=True)
    status = models.CharField(max_length=16, choices=RoundStatus.choices, default=RoundStatus.OPEN)
    opened_at = models.DateTimeField()
    cutoff_at = models.DateTimeField(unique=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    horizon_start = models.DateTimeField()
    slot_minutes = models.PositiveIntegerField()
    slots = models.PositiveIntegerField()
    snapshot = models.TextField(blank=True, default="")
    snapshot_sha256 = models.CharField(max_length=64, blank=True, default="")
    merkle_root = models.CharField(max_length=64, blank=True, default="")
    clearing_started_at = models.DateTimeField(null=True, blank=True)
    clearing_attempts = models.PositiveIntegerField(default=0)
    result = models.TextField(blank=True, default="")
    result_sha256 = models.CharField(max_length=64, blank=True, default="")
    report = models.TextField(blank=True, default="")
    report_sha256 = models.CharField(max_length=64, blank=True, default="")
    cleared_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-number"]
        constraints = [
            # Two beat processes cannot open two rounds: at most one row may be open.
            models.UniqueConstraint(fields=["status"], condition=Q(status="open"), name="round_one_open"),
            models.CheckConstraint(condition=Q(status__in=RoundStatus.values), name="round_status_valid"),
            models.CheckConstraint(
                condition=Q(opened_at__lt=F("cutoff_at")), name="round_opens_before_cutoff"
            ),
            models.CheckConstraint(
                condition=Q(slots__gt=0) & Q(slot_minutes__gt=0), name="round_grid_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"round {self.number} ({self.status})"


class Lease(models.Model):
    """An award: the buyer's right to `gpus` specific GPUs over `[start, end)` for `payment_cents`.

    Units: `payment_cents` is the total integer cents for the whole lease (gpus × hours).
    """

    round = models.ForeignKey(Round, on_delete=models.PROTECT, related_name="leases")
    bid = models.OneToOneField(Bid, on_delete=models.PROTECT, related_name="lease")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="leases")
    gpu_model = models.ForeignKey(GpuModel, on_delete=models.PROTECT, related_name="+")
    cluster_code = models.CharField(max_length=120, blank=True, default="")
    gpus = models.PositiveIntegerField()
    start = models.DateTimeField()
    end = models.DateTimeField()
    payment_cents = models.BigIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-start", "-id"]
        indexes = [models.Index(fields=["team", "start"])]
        constraints = [
            models.CheckConstraint(condition=Q(start__lt=F("end")), name="lease_start_before_end"),
            models.CheckConstraint(condition=Q(gpus__gt=0), name="lease_gpus_positive"),
            models.CheckConstraint(condition=Q(payment_cents__gte=0), name="lease_payment_not_negative"),
        ]

    def __str__(self) -> str:
        return f"lease {self.pk}: {self.gpus}x {self.gpu_model_id} {self.start:%Y-%m-%d %H:%M}"


class LeaseSource(models.Model):
    """The part of a lease one seller's offer serves, and what that seller earns for it (cents)."""

    lease = models.ForeignKey(Lease, on_delete=models.CASCADE, related_name="sources")
    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, related_name="lease_sources")
    gpus = models.PositiveIntegerField()
    revenue_cents = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["lease", "offer"], name="leasesource_unique"),
            models.CheckConstraint(condition=Q(gpus__gt=0), name="leasesource_gpus_positive"),
            models.CheckConstraint(
                condition=Q(revenue_cents__gte=0), name="leasesource_revenue_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.gpus} GPUs of offer {self.offer_id} for lease {self.lease_id}"


class LeaseGpu(models.Model):
    """One specific GPU in a lease. A PostgreSQL exclusion constraint (migration 0002) forbids one
    GPU in two leases whose `[start, end)` overlap, whatever code writes the rows."""

    lease = models.ForeignKey(Lease, on_delete=models.CASCADE, related_name="lease_gpus")
    source = models.ForeignKey(LeaseSource, on_delete=models.CASCADE, related_name="lease_gpus")
    gpu = models.ForeignKey(Gpu, on_delete=models.PROTECT, related_name="lease_gpus")
    start = models.DateTimeField()
    end = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["gpu", "start"])]
        constraints = [
            models.UniqueConstraint(fields=["lease", "gpu"], name="leasegpu_unique"),
            models.CheckConstraint(condition=Q(start__lt=F("end")), name="leasegpu_start_before_end"),
        ]

    def __str__(self) -> str:
        return f"GPU {self.gpu_id} in lease {self.lease_id}"


class Outcome(models.TextChoices):
    WON = "won", "Won"
    LOST = "lost", "Lost"


class BidOutcome(models.Model):
    """What happened to one bid in one round; a bid that lost stays live for later rounds."""

    round = models.ForeignKey(Round, on_delete=models.PROTECT, related_name="bid_outcomes")
    bid = models.ForeignKey(Bid, on_delete=models.PROTECT, related_name="outcomes")
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    reason = models.CharField(max_length=64, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)
    lease = models.OneToOneField(Lease, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["round", "bid"], name="bidoutcome_unique")]

    def __str__(self) -> str:
        return f"bid {self.bid_id} {self.outcome} in round {self.round_id}"


class OfferFill(models.Model):
    """What one offer sold in one round (GPU-hours and integer cents)."""

    round = models.ForeignKey(Round, on_delete=models.PROTECT, related_name="offer_fills")
    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, related_name="fills")
    gpu_hours_sold = models.BigIntegerField()
    revenue_cents = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["round", "offer"], name="offerfill_unique")]

    def __str__(self) -> str:
        return f"offer {self.offer_id} sold {self.gpu_hours_sold} GPU-hours in round {self.round_id}"


class PricePoint(models.Model):
    """The published clearing price of one (cluster, model) in one hour slot of one round."""

    round = models.ForeignKey(Round, on_delete=models.PROTECT, related_name="prices")
    cluster_code = models.CharField(max_length=120)
    gpu_model = models.CharField(max_length=64)
    slot_start = models.DateTimeField()
    cents_per_gpu_hour = models.BigIntegerField()

    class Meta:
        ordering = ["slot_start", "gpu_model", "cluster_code"]
        indexes = [models.Index(fields=["gpu_model", "cluster_code", "slot_start"])]
        constraints = [
            models.UniqueConstraint(
                fields=["round", "cluster_code", "gpu_model", "slot_start"], name="pricepoint_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.gpu_model} {self.cluster_code} {self.slot_start:%Y-%m-%d %H:%M}"


class Notification(models.Model):
    """A stored message to a team about its orders (webhooks deliver the same events later)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="notifications")
    round = models.ForeignKey(Round, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    event = models.CharField(max_length=40)
    # Derived from what caused it (e.g. "round:7:bid:42"), so clearing twice cannot notify twice.
    key = models.CharField(max_length=200, unique=True)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["team", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.event} for team {self.team_id}"
