"""Metering: agent enrolment, signed envelopes of interval reports, delivery results and anomalies.

The wire protocol is docs/metering-agent.md (gridx.metering/v1). The agent's `host_id` on the wire
names one enrolment (a `HostKey`), not a `marketplace.Host`: re-enrolling a host makes a new key
and a new hash chain starting at seq 1, so envelopes are unique per (key, seq).

Times are UTC; durations are integer milliseconds (`*_ms`), energy integer millijoules (`*_mj`),
power integer milliwatts (`*_mw`).
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from auctions.models import Lease
from marketplace.models import Gpu, Host, Team, User


class EnrolmentToken(models.Model):
    """A single-use, expiring secret that lets one agent enrol one seller host; only its hash is kept."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="+")
    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="enrolment_tokens")
    token_sha256 = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(created_at__lt=F("expires_at")), name="enrolmenttoken_expiry_after"
            ),
            models.CheckConstraint(
                condition=Q(used_at__isnull=True) | Q(used_at__gte=F("created_at")),
                name="enrolmenttoken_used_after_created",
            ),
        ]

    def __str__(self) -> str:
        return f"enrolment token {self.pk} for host {self.host_id}"


class KeyStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    RETIRED = "retired", "Retired (replaced by a newer enrolment)"
    REVOKED = "revoked", "Revoked"


class HostKey(models.Model):
    """One enrolment of an agent on a host: its Ed25519 public key, wire id and chain position.

    `acked_seq` is the highest N such that every seq 1..N of this key is stored or consumed.
    """

    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="agent_keys")
    agent_id = models.CharField(max_length=128, unique=True)
    public_key = models.CharField(max_length=44, unique=True)
    status = models.CharField(max_length=16, choices=KeyStatus.choices, default=KeyStatus.ACTIVE)
    hostname = models.CharField(max_length=253, blank=True, default="")
    agent_version = models.CharField(max_length=64, blank=True, default="")
    inventory = models.JSONField(default=list, blank=True)  # the GPUs as the agent reported them
    token = models.OneToOneField(
        EnrolmentToken, null=True, blank=True, on_delete=models.PROTECT, related_name="host_key"
    )
    enrolled_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    acked_seq = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["host_id", "-enrolled_at"]
        constraints = [
            # Rotation replaces the active key; two live keys for one host would be two chains.
            models.UniqueConstraint(fields=["host"], condition=Q(status="active"), name="hostkey_one_active"),
            models.CheckConstraint(condition=Q(status__in=KeyStatus.values), name="hostkey_status_valid"),
            models.CheckConstraint(condition=Q(acked_seq__gte=0), name="hostkey_acked_not_negative"),
            models.CheckConstraint(
                condition=Q(status="active", ended_at__isnull=True)
                | (~Q(status="active") & Q(ended_at__isnull=False)),
                name="hostkey_ended_iff_not_active",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} ({self.status})"


class EnvelopeStatus(models.TextChoices):
    ACCEPTED = "accepted", "Accepted"
    REFUSED = "refused", "Refused (sequence consumed)"


class Envelope(models.Model):
    """One link of a key's hash chain as received: its reports were stored, or it was consumed.

    `sha256` is empty for a consumed body that could not be parsed (nothing to chain against).
    """

    key = models.ForeignKey(HostKey, on_delete=models.PROTECT, related_name="envelopes")
    seq = models.BigIntegerField()
    sha256 = models.CharField(max_length=64, blank=True, default="")
    prev_hash = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=EnvelopeStatus.choices)
    refusal_code = models.CharField(max_length=40, blank=True, default="")
    refusal_detail = models.TextField(blank=True, default="")
    agent_version = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(null=True, blank=True)  # the agent's clock
    received_at = models.DateTimeField()
    reports_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["key_id", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["key", "seq"], name="envelope_unique_key_seq"),
            models.CheckConstraint(condition=Q(seq__gte=1), name="envelope_seq_positive"),
            models.CheckConstraint(
                condition=Q(status__in=EnvelopeStatus.values), name="envelope_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(status="accepted", refusal_code="") | (Q(status="refused") & ~Q(refusal_code="")),
                name="envelope_refusal_code_iff_refused",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key_id}#{self.seq} ({self.status})"


class ChainGap(models.Model):
    """Sequence numbers missing below an envelope when it arrived: what the server never received."""

    key = models.ForeignKey(HostKey, on_delete=models.PROTECT, related_name="gaps")
    first_seq = models.BigIntegerField()
    last_seq = models.BigIntegerField()
    detected_at = models.DateTimeField()

    class Meta:
        ordering = ["key_id", "first_seq"]
        constraints = [
            models.UniqueConstraint(fields=["key", "last_seq"], name="chaingap_unique_key_last"),
            models.CheckConstraint(
                condition=Q(first_seq__gte=1) & Q(first_seq__lte=F("last_seq")), name="chaingap_range_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key_id} missing {self.first_seq}..{self.last_seq}"


class IntervalReport(models.Model):
    """What one GPU did during `[start, end)` on its host's wall clock; `monotonic_ms` is the true length."""

    # No single-column indexes on the two keys: the unique (envelope, position) and the (gpu, start)
    # index lead with them and serve the same lookups, and each index is updated for every report
    # ingested (the hot path: docs/metering.md, Benchmark).
    envelope = models.ForeignKey(Envelope, on_delete=models.PROTECT, related_name="reports", db_index=False)
    position = models.PositiveIntegerField()  # index in the envelope's `reports`
    gpu = models.ForeignKey(Gpu, on_delete=models.PROTECT, related_name="interval_reports", db_index=False)
    start = models.DateTimeField()
    end = models.DateTimeField()
    monotonic_ms = models.BigIntegerField()
    clock_step_ms = models.BigIntegerField(default=0)
    present = models.BooleanField()
    healthy = models.BooleanField()
    util_mean_pct = models.FloatField(null=True, blank=True)
    util_max_pct = models.FloatField(null=True, blank=True)
    mem_used_max_bytes = models.BigIntegerField(null=True, blank=True)
    energy_mj = models.BigIntegerField(null=True, blank=True)
    power_mean_mw = models.BigIntegerField(null=True, blank=True)
    xid_errors = models.JSONField(default=list, blank=True)
    ecc_uncorrected_delta = models.BigIntegerField(null=True, blank=True)
    processes_max = models.IntegerField(null=True, blank=True)
    samples = models.IntegerField()
    energy_resets = models.IntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["gpu", "start"])]
        constraints = [
            models.UniqueConstraint(fields=["envelope", "position"], name="intervalreport_unique_position"),
            models.CheckConstraint(condition=Q(start__lt=F("end")), name="intervalreport_start_before_end"),
            models.CheckConstraint(
                condition=Q(monotonic_ms__gt=0) & Q(monotonic_ms__lte=3_600_000), name="intervalreport_length"
            ),
            models.CheckConstraint(
                condition=Q(energy_mj__isnull=True) | Q(energy_mj__gte=0),
                name="intervalreport_energy_not_negative",
            ),
            models.CheckConstraint(condition=Q(samples__gte=1), name="intervalreport_samples_positive"),
        ]

    def __str__(self) -> str:
        return f"GPU {self.gpu_id} {self.start:%Y-%m-%d %H:%M:%S}+{self.monotonic_ms}ms"


class DeliveryResult(models.Model):
    """Verified delivery of one GPU of one lease, recomputed as reports arrive (whole lease span)."""

    lease = models.ForeignKey(Lease, on_delete=models.CASCADE, related_name="deliveries")
    gpu = models.ForeignKey(Gpu, on_delete=models.PROTECT, related_name="deliveries")
    leased_ms = models.BigIntegerField()
    delivered_ms = models.BigIntegerField()
    unhealthy_ms = models.BigIntegerField()
    reports = models.PositiveIntegerField()
    energy_mj = models.BigIntegerField()
    last_report_end = models.DateTimeField(null=True, blank=True)
    complete = models.BooleanField()
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["lease_id", "gpu_id"]
        constraints = [
            models.UniqueConstraint(fields=["lease", "gpu"], name="deliveryresult_unique"),
            models.CheckConstraint(
                condition=Q(delivered_ms__gte=0) & Q(delivered_ms__lte=F("leased_ms")),
                name="deliveryresult_delivered_within_leased",
            ),
            models.CheckConstraint(
                condition=Q(unhealthy_ms__gte=0) & Q(unhealthy_ms__lte=F("leased_ms") - F("delivered_ms")),
                name="deliveryresult_unhealthy_within_rest",
            ),
            models.CheckConstraint(condition=Q(energy_mj__gte=0), name="deliveryresult_energy_not_negative"),
        ]

    def __str__(self) -> str:
        return f"lease {self.lease_id} GPU {self.gpu_id}: {self.delivered_ms}/{self.leased_ms} ms"


class AnomalyKind(models.TextChoices):
    ENERGY_MISMATCH = "energy_mismatch", "Energy far from power × time"
    DUPLICATE_UUID = "duplicate_uuid", "The same GPU UUID reported by two hosts"
    REPORTS_STOPPED = "reports_stopped", "A GPU's reports stopped for the rest of a lease"
    CHAIN_BROKEN = "chain_broken", "A host's envelope hash chain is broken"


class AnomalyStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACCEPTED = "accepted", "Accepted (bill as computed)"
    CREDITED = "credited", "Credited (the buyer is not charged for it)"
    DISPUTED = "disputed", "Disputed (with the seller)"


class Anomaly(models.Model):
    """Something in the reports a person must look at before it is billed; `key` makes raising idempotent."""

    key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=32, choices=AnomalyKind.choices)
    status = models.CharField(max_length=16, choices=AnomalyStatus.choices, default=AnomalyStatus.OPEN)
    lease = models.ForeignKey(
        Lease, null=True, blank=True, on_delete=models.CASCADE, related_name="anomalies"
    )
    gpu = models.ForeignKey(Gpu, null=True, blank=True, on_delete=models.PROTECT, related_name="anomalies")
    host = models.ForeignKey(Host, null=True, blank=True, on_delete=models.PROTECT, related_name="anomalies")
    start = models.DateTimeField(null=True, blank=True)  # the time concerned, when there is one
    end = models.DateTimeField(null=True, blank=True)
    message = models.TextField()
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    resolution_note = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "anomalies"
        indexes = [models.Index(fields=["status", "lease"])]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=AnomalyKind.values), name="anomaly_kind_valid"),
            models.CheckConstraint(condition=Q(status__in=AnomalyStatus.values), name="anomaly_status_valid"),
            models.CheckConstraint(
                condition=Q(status="open", resolved_at__isnull=True)
                | (~Q(status="open") & Q(resolved_at__isnull=False)),
                name="anomaly_resolved_iff_not_open",
            ),
            models.CheckConstraint(
                condition=Q(start__isnull=True) | Q(end__isnull=True) | Q(start__lt=F("end")),
                name="anomaly_start_before_end",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} ({self.status})"
