"""Reads of rounds and their results; team data only through the acting team.

`round_snapshot_build` turns the live order book into the frozen gridx.round/v1 document.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from typing import Any, Protocol

from django.conf import settings
from django.db.models import Avg, Count, Max, Min, Prefetch, Q, QuerySet, Sum
from django.db.models import F as models_F
from django.db.models.functions import TruncDay

from marketplace.errors import NotFound
from marketplace.models import Bid, BidStatus, Offer, OfferStatus, Team
from marketplace.selectors import bid_list

from .models import BidOutcome, Lease, LeaseSource, PricePoint, Round, RoundStatus

ISO = "%Y-%m-%dT%H:%M:%SZ"


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(ISO)


def offer_piece_id(offer_id: int, piece: int, pieces: int) -> str:
    return f"o{offer_id}" if pieces == 1 else f"o{offer_id}.{piece}"


def offer_id_of_piece(piece_id: str) -> int:
    return int(piece_id[1:].split(".", 1)[0])


def bid_id_of(bid_ref: str) -> int:
    return int(bid_ref[1:])


def xor_group_of(bid: Bid) -> str | None:
    # Labels are a team's own; prefixing the team keeps two teams' "alt" groups apart.
    return f"{bid.team.slug}:{bid.xor_group}" if bid.xor_group else None


def _remaining_capacity(offers: list[Offer], round_: Round) -> dict[int, list[int]]:
    """GPUs of each offer not yet leased, per slot of the round's horizon."""
    slot = dt.timedelta(minutes=round_.slot_minutes)
    hs = round_.horizon_start
    caps: dict[int, list[int]] = {}
    for offer in offers:
        caps[offer.pk] = [
            offer.gpus if offer.start <= hs + k * slot and hs + (k + 1) * slot <= offer.end else 0
            for k in range(round_.slots)
        ]
    sold = LeaseSource.objects.filter(offer__in=offers, lease__end__gt=hs).values_list(
        "offer_id", "gpus", "lease__start", "lease__end"
    )
    for offer_id, gpus, start, end in sold:
        first = max(int((start - hs) / slot), 0)
        last = min(int((end - hs) / slot), round_.slots)
        for k in range(first, last):
            caps[offer_id][k] -= gpus
    return caps


def _pieces(cap: list[int]) -> list[tuple[int, int, int]]:
    """Maximal runs of constant positive capacity: (start_slot, end_slot, gpus)."""
    runs: list[tuple[int, int, int]] = []
    k = 0
    while k < len(cap):
        if cap[k] <= 0:
            k += 1
            continue
        j = k
        while j < len(cap) and cap[j] == cap[k]:
            j += 1
        runs.append((k, j, cap[k]))
        k = j
    return runs


class BidTerms(Protocol):
    """What a round file needs of a bid: a stored Bid and a (frozen) BidSpec both have it."""

    @property
    def gpus(self) -> int: ...
    @property
    def min_gpus(self) -> int: ...
    @property
    def duration_hours(self) -> int: ...
    @property
    def earliest_start(self) -> dt.datetime: ...
    @property
    def latest_end(self) -> dt.datetime: ...
    @property
    def colocate(self) -> bool: ...
    @property
    def limit_cents_per_gpu_hour(self) -> int: ...


def bid_document(
    *, ref: str, team_slug: str, gpu_models: list[str], terms: BidTerms, round_: Round
) -> dict[str, Any] | None:
    """A bid as a gridx.round/v1 bid of `round_`, or None when its window cannot fit the horizon."""
    slot = dt.timedelta(minutes=round_.slot_minutes)
    hs = round_.horizon_start
    first = max(int((terms.earliest_start - hs) / slot), 0)
    last = min(int((terms.latest_end - hs) / slot), round_.slots)
    duration = terms.duration_hours * (60 // round_.slot_minutes)
    if last - first < duration:
        return None
    return {
        "id": ref,
        "team": team_slug,
        "gpu_models": sorted(set(gpu_models)),
        "gpus": terms.gpus,
        "min_gpus": terms.min_gpus,
        "duration_slots": duration,
        "earliest_start_slot": first,
        "latest_end_slot": last,
        "colocate": terms.colocate,
        "limit_cents_per_gpu_hour": terms.limit_cents_per_gpu_hour,
    }


def round_snapshot_build(*, round_: Round) -> tuple[dict[str, Any], list[Bid]]:
    """The frozen gridx.round/v1 document of the live book, and the bids it includes.

    Offers already partly leased become pieces of constant remaining capacity; bids whose window
    does not fit the horizon are left for later rounds.
    """
    slot_min = round_.slot_minutes
    slot = dt.timedelta(minutes=slot_min)
    hs = round_.horizon_start
    he = hs + round_.slots * slot
    offers = list(
        Offer.objects.filter(status=OfferStatus.LIVE, end__gt=hs, start__lt=he)
        .select_related("team", "cluster__team", "gpu_model")
        .order_by("pk")
    )
    caps = _remaining_capacity(offers, round_)
    offer_docs: list[dict[str, Any]] = []
    for offer in offers:
        runs = _pieces(caps[offer.pk])
        for i, (s, e, gpus) in enumerate(runs):
            offer_docs.append(
                {
                    "id": offer_piece_id(offer.pk, i, len(runs)),
                    "team": offer.team.slug,
                    "cluster": offer.cluster.code,
                    "gpu_model": offer.gpu_model.name,
                    "gpus": gpus,
                    "start_slot": s,
                    "end_slot": e,
                    "reserve_cents_per_gpu_hour": offer.reserve_cents_per_gpu_hour,
                }
            )
    bids = list(
        Bid.objects.filter(status=BidStatus.OPEN, latest_end__gt=hs, earliest_start__lt=he)
        .select_related("team")
        .prefetch_related("gpu_models")
        .order_by("pk")
    )
    bid_docs: list[dict[str, Any]] = []
    included: list[Bid] = []
    for bid in bids:
        doc = bid_document(
            ref=f"b{bid.pk}",
            team_slug=bid.team.slug,
            gpu_models=[m.name for m in bid.gpu_models.all()],
            terms=bid,
            round_=round_,
        )
        if doc is None:
            continue
        if group := xor_group_of(bid):
            doc["xor_group"] = group
        bid_docs.append(doc)
        included.append(bid)
    document = {
        "format": "gridx.round/v1",
        "round": f"r{round_.number}",
        "start": iso(hs),
        "slot_minutes": slot_min,
        "slots": round_.slots,
        "currency": settings.MARKET_CURRENCY,
        "offers": offer_docs,
        "bids": bid_docs,
    }
    return document, included


# --- public reads -----------------------------------------------------------------------------


def round_open_get() -> Round | None:
    return Round.objects.filter(status=RoundStatus.OPEN).first()


def round_list_public(*, limit: int = 20) -> QuerySet[Round]:
    """Recent rounds, newest first (their reports are public)."""
    return Round.objects.order_by("-number")[:limit]


def round_get_public(*, number: int) -> Round:
    round_ = Round.objects.filter(number=number).first()
    if round_ is None:
        raise NotFound(f"round {number} not found")
    return round_


def public_round_rows(*, limit: int = 10) -> list[dict[str, Any]]:
    """Recent rounds with the public figures of their clearing reports."""
    rows = []
    for r in Round.objects.order_by("-number")[:limit]:
        report = json.loads(r.report) if r.report else {}
        rows.append({"round": r, "report": report})
    return rows


def price_history(
    *, gpu_model: str | None = None, cluster_code: str | None = None, since: dt.datetime | None = None
) -> QuerySet[PricePoint]:
    prices = PricePoint.objects.all()
    if gpu_model:
        prices = prices.filter(gpu_model=gpu_model)
    if cluster_code:
        prices = prices.filter(cluster_code=cluster_code)
    if since:
        prices = prices.filter(slot_start__gte=since)
    return prices


def gpu_hours_by_round(*, limit: int = 30) -> list[dict[str, Any]]:
    """GPU-hours traded per cleared round (aggregates only)."""
    totals: dict[int, float] = defaultdict(float)
    leases = Lease.objects.filter(round__status=RoundStatus.CLEARED).values_list(
        "round__number", "gpus", "start", "end"
    )
    for number, gpus, start, end in leases:
        totals[number] += gpus * (end - start).total_seconds() / 3600
    return [{"round": n, "gpu_hours": totals[n]} for n in sorted(totals)[-limit:]]


# --- team reads -------------------------------------------------------------------------------


def bid_outcomes_for_team(*, team: Team, bid_id: int | None = None) -> QuerySet[BidOutcome]:
    outcomes = BidOutcome.objects.filter(bid__team=team).select_related("round", "lease")
    return outcomes if bid_id is None else outcomes.filter(bid_id=bid_id)


def lease_list(*, team: Team) -> QuerySet[Lease]:
    """Leases the team bought."""
    return (
        Lease.objects.filter(team=team)
        .select_related("round", "gpu_model")
        .prefetch_related("lease_gpus__gpu")
    )


def lease_get(*, team: Team, lease_id: int) -> Lease:
    lease = lease_list(team=team).filter(pk=lease_id).first()
    if lease is None:
        raise NotFound(f"lease {lease_id} not found")
    return lease


def offer_revenue(*, team: Team) -> dict[int, int]:
    """Revenue in cents per offer of the team, over all rounds."""
    rows = (
        LeaseSource.objects.filter(offer__team=team).values("offer_id").annotate(total=Sum("revenue_cents"))
    )
    return {row["offer_id"]: row["total"] for row in rows}


def bid_inclusion_proof(*, team: Team, bid_id: int, round_number: int) -> dict[str, Any]:
    """The team's receipt for its bid and the proof that it is under the round's Merkle root."""
    from marketplace.receipts import bid_receipt_document
    from marketplace.selectors import bid_get

    from . import merkle

    bid = bid_get(team=team, bid_id=bid_id)  # another team's bid is NotFound
    round_ = Round.objects.filter(number=round_number).exclude(snapshot="").first()
    if round_ is None:
        raise NotFound(f"round {round_number} has no frozen snapshot")
    ids = [bid_id_of(b["id"]) for b in json.loads(round_.snapshot)["bids"]]
    if bid.pk not in ids:
        raise NotFound(f"bid {bid_id} is not in round {round_number}")
    receipts = list(Bid.objects.filter(pk__in=ids).values_list("receipt", flat=True))
    return {
        "round": round_.number,
        "root": round_.merkle_root,
        "receipt": bid.receipt,
        "document": bid_receipt_document(bid),
        "proof": merkle.inclusion_proof(receipts, bid.receipt),
    }


def price_index(
    *,
    gpu_model: str | None = None,
    cluster_code: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    bucket: str = "slot",
    limit: int = 5000,
) -> list[dict[str, Any]]:
    """Published clearing prices per (model, cluster) and slot or UTC day, oldest first."""
    prices = price_history(gpu_model=gpu_model, cluster_code=cluster_code, since=since)
    if until:
        prices = prices.filter(slot_start__lt=until)
    by = TruncDay("slot_start", tzinfo=dt.UTC) if bucket == "day" else models_F("slot_start")
    keyed = prices.annotate(bucket_start=by)
    rows = (
        keyed.values("gpu_model", "cluster_code", "bucket_start")
        .annotate(
            mean=Avg("cents_per_gpu_hour"),
            low=Min("cents_per_gpu_hour"),
            high=Max("cents_per_gpu_hour"),
            points=Count("id"),
        )
        .order_by("bucket_start", "gpu_model", "cluster_code")[:limit]
    )
    return [
        {
            "gpu_model": r["gpu_model"],
            "cluster": r["cluster_code"],
            "bucket_start": r["bucket_start"],
            "mean_cents_per_gpu_hour": round(r["mean"]),
            "min_cents_per_gpu_hour": r["low"],
            "max_cents_per_gpu_hour": r["high"],
            "points": r["points"],
        }
        for r in rows
    ]


def lease_list_side(*, team: Team, side: str) -> QuerySet[Lease]:
    """Leases the team bought, or leases served from the team's offers."""
    if side == "sold":
        return (
            Lease.objects.filter(sources__offer__team=team)
            .distinct()
            .select_related("round", "gpu_model")
            .order_by("-id")
        )
    return lease_list(team=team)


def lease_get_either(*, team: Team, lease_id: int) -> Lease:
    """A lease the team bought or sold into; any other team gets NotFound."""
    lease = (
        Lease.objects.filter(Q(team=team) | Q(sources__offer__team=team), pk=lease_id)
        .distinct()
        .select_related("round", "gpu_model")
        .prefetch_related("lease_gpus__gpu")
        .first()
    )
    if lease is None:
        raise NotFound(f"lease {lease_id} not found")
    return lease


# --- the buyer's web pages (auctions/views.py) -------------------------------------------------


def bid_rows_for_team(*, team: Team, status: str | None = None) -> QuerySet[Bid]:
    """The team's bids, newest first, each with its models, outcomes (oldest round first) and lease:
    a fixed number of queries for a page of any size."""
    outcomes = BidOutcome.objects.select_related("round").order_by("round__number")
    return (
        bid_list(team=team, status=status)
        .select_related("lease")
        .prefetch_related(Prefetch("outcomes", queryset=outcomes))
        .order_by("-created_at", "-id")
    )


def lease_list_for_buyer(*, team: Team) -> QuerySet[Lease]:
    """Leases the team bought, newest first, with the verified delivered milliseconds so far
    (`delivered_ms`, summed over metering's per-GPU delivery results; None before any report)."""
    return (
        Lease.objects.filter(team=team)
        .select_related("round", "gpu_model")
        .annotate(delivered_ms=Sum("deliveries__delivered_ms"))
        .order_by("-start", "-id")
    )


# --- the public market page (aggregates only: no bid is ever shown) ------------------------------

PRICE_RANGES = {"24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7), "30d": dt.timedelta(days=30)}


def round_last_cleared() -> Round | None:
    """The newest cleared round, without its (large) snapshot and result texts."""
    return (
        Round.objects.filter(status=RoundStatus.CLEARED)
        .defer("snapshot", "result")
        .order_by("-number")
        .first()
    )


def round_prices_by_pair(*, round_: Round) -> list[dict[str, Any]]:
    """A round's clearing prices per (model, cluster): mean, lowest and highest over its priced slots."""
    rows = (
        PricePoint.objects.filter(round=round_)
        .values("gpu_model", "cluster_code")
        .annotate(
            mean=Avg("cents_per_gpu_hour"),
            low=Min("cents_per_gpu_hour"),
            high=Max("cents_per_gpu_hour"),
            slots=Count("id"),
        )
        .order_by("gpu_model", "cluster_code")
    )
    return [
        {
            "gpu_model": r["gpu_model"],
            "cluster": r["cluster_code"],
            "mean_cents": round(r["mean"]),
            "min_cents": r["low"],
            "max_cents": r["high"],
            "slots": r["slots"],
        }
        for r in rows
    ]


def price_pairs() -> list[tuple[str, str]]:
    """Every (model, cluster) that has a published price, for the chart's filters."""
    return list(
        PricePoint.objects.values_list("gpu_model", "cluster_code")
        .distinct()
        .order_by("gpu_model", "cluster_code")
    )


def price_chart(
    *, now: dt.datetime, range_key: str = "7d", gpu_model: str | None = None, cluster_code: str | None = None
) -> dict[str, Any]:
    """Clearing prices by delivery time around `now`, one series per (model, cluster).

    Prices are published per delivery slot, and rounds sell slots days ahead, so the window is
    `range` back (delivered) and `range` ahead (sold ahead); 30 days are bucketed by UTC day.
    """
    span = PRICE_RANGES.get(range_key, PRICE_RANGES["7d"])
    rows = price_index(
        gpu_model=gpu_model or None,
        cluster_code=cluster_code or None,
        since=now - span,
        until=now + span,
        bucket="day" if span > dt.timedelta(days=7) else "slot",
        limit=20_000,
    )
    series: dict[tuple[str, str], list[list[int]]] = {}
    for r in rows:
        at = int(r["bucket_start"].timestamp() * 1000)
        series.setdefault((r["gpu_model"], r["cluster"]), []).append([at, r["mean_cents_per_gpu_hour"]])
    return {
        "range": range_key if range_key in PRICE_RANGES else "7d",
        "now": int(now.timestamp() * 1000),
        "series": [
            {"gpu_model": model, "cluster": cluster, "label": f"{model} · {cluster}", "points": points}
            for (model, cluster), points in sorted(series.items())
        ],
    }


def gpu_hours_per_round(*, limit: int = 30) -> list[dict[str, Any]]:
    """GPU-hours traded in each of the last `limit` cleared rounds (0 for a round without trades)."""
    numbers = list(
        Round.objects.filter(status=RoundStatus.CLEARED)
        .order_by("-number")
        .values_list("number", flat=True)[:limit]
    )
    totals = dict.fromkeys(numbers, 0.0)
    leases = Lease.objects.filter(round__number__in=numbers).values_list(
        "round__number", "gpus", "start", "end"
    )
    for number, gpus, start, end in leases:
        totals[number] += gpus * (end - start).total_seconds() / 3600
    return [{"round": n, "gpu_hours": round(totals[n], 2)} for n in sorted(totals)]


def supply_by_day(*, now: dt.datetime, days: int = 7) -> dict[str, Any]:
    """GPU-hours still on offer per GPU model and UTC day over the coming `days` days.

    Live offers' windows minus what earlier rounds already leased from them; sums over every
    seller, so no single offer (and no bid) can be read from it.
    """
    first_day = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day_starts = [first_day + dt.timedelta(days=k) for k in range(days)]
    start, end = max(now, first_day), first_day + dt.timedelta(days=days)

    def spread(
        totals: dict[str, list[float]], model: str, gpus: int, a: dt.datetime, b: dt.datetime, sign: int
    ) -> None:
        a, b = max(a, start), min(b, end)
        if a >= b:
            return
        row = totals.setdefault(model, [0.0] * days)
        for k, day in enumerate(day_starts):
            lo, hi = max(a, day), min(b, day + dt.timedelta(days=1))
            if lo < hi:
                row[k] += sign * gpus * (hi - lo).total_seconds() / 3600

    totals: dict[str, list[float]] = {}
    offers = Offer.objects.filter(status=OfferStatus.LIVE, end__gt=start, start__lt=end).values_list(
        "gpu_model__name", "gpus", "start", "end"
    )
    for model, gpus, a, b in offers:
        spread(totals, model, gpus, a, b, +1)
    sold = LeaseSource.objects.filter(
        offer__status=OfferStatus.LIVE, lease__end__gt=start, lease__start__lt=end
    ).values_list("offer__gpu_model__name", "gpus", "lease__start", "lease__end")
    for model, gpus, a, b in sold:
        spread(totals, model, gpus, a, b, -1)
    return {
        "days": [d.strftime("%a %d %b") for d in day_starts],
        "series": [
            {"gpu_model": model, "gpu_hours": [round(max(v, 0.0), 1) for v in row]}
            for model, row in sorted(totals.items())
            if any(v > 0 for v in row)
        ],
    }


def round_list_reports() -> QuerySet[Round]:
    """Past rounds (closed, clearing, cleared or failed), newest first, without snapshot and result."""
    return Round.objects.exclude(status=RoundStatus.OPEN).defer("snapshot", "result").order_by("-number")


def report_of(round_: Round) -> dict[str, Any]:
    """A round's published report as a dict ({} before it is cleared)."""
    return json.loads(round_.report) if round_.report else {}


def round_number_of_report(*, report_sha256: str) -> int | None:
    """The number of the round whose report has this hash (the chain's previous link), if any."""
    if not report_sha256:
        return None
    return Round.objects.filter(report_sha256=report_sha256).values_list("number", flat=True).first()
