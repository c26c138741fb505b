"""The buyer's pages (/buy/): place a bid (with "or" alternatives), preview it, my bids, my leases.

Views are thin: the form turns what a person types into `BidSpec`s, the same rules as the API
(`marketplace.services.bid_spec_errors`) judge them while typing, and the auctions services place,
replace and cancel bids exactly as the REST API does. Another team's bid or lease is a 404.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import uuid
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.forms import formset_factory
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from marketplace import grid
from marketplace import services as market
from marketplace.errors import DomainError, FieldError, InvalidInput, NotFound
from marketplace.models import Bid, BidStatus, GpuModel, Role, Team, User
from marketplace.specs import BidSpec
from marketplace.web import dollars, paginate, team_required
from metering.selectors import lease_usage

from . import preview, selectors, services
from .reasons import reason_sentence

TRADERS = (Role.OWNER, Role.TRADER)
MAX_ROWS = 8  # a bid and up to seven alternatives; the API allows more, a form should not


def _team(request: HttpRequest) -> Team:
    return request.team  # type: ignore[attr-defined,no-any-return]  # set by team_required


def _actor(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]  # team_required lets only signed-in users in


# --- the bid form ---------------------------------------------------------------------------------


def _slot_minutes() -> int:
    return int(settings.SLOT_MINUTES)


class UtcDateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%Y-%m-%dT%H:%M", **kwargs)


class BidRowForm(forms.Form):
    """One bid, or one "or" alternative of a bid. Money is typed in dollars and kept in cents."""

    gpu_models = forms.MultipleChoiceField(
        label="GPU model(s)",
        widget=forms.CheckboxSelectMultiple,
        help_text="Tick every model you could use. You get GPUs of one of them, never a mix.",
        error_messages={"required": "Tick at least one GPU model."},
    )
    gpus = forms.IntegerField(
        label="GPUs",
        help_text="How many GPUs you want at the same time.",
        error_messages={"required": "Say how many GPUs you want.", "invalid": "GPUs is a whole number."},
    )
    min_gpus = forms.IntegerField(
        label="Minimum GPUs (partial fill)",
        required=False,
        help_text="The fewest GPUs still worth having. Leave empty for all or nothing.",
        error_messages={"invalid": "Minimum GPUs is a whole number."},
    )
    duration_hours = forms.IntegerField(
        label="Duration (hours)",
        help_text="How many hours in a row you need them.",
        error_messages={"required": "Say how many hours you need.", "invalid": "Hours are a whole number."},
    )
    earliest_start = forms.DateTimeField(
        label="Earliest start (UTC)",
        widget=UtcDateTimeInput(),
        error_messages={"required": "Pick the earliest start.", "invalid": "Enter a date and time."},
    )
    latest_end = forms.DateTimeField(
        label="Latest end (UTC)",
        widget=UtcDateTimeInput(),
        error_messages={"required": "Pick the latest end.", "invalid": "Enter a date and time."},
    )
    colocate = forms.BooleanField(
        label="All GPUs in one cluster",
        required=False,
        initial=True,
        help_text="Untick to accept GPUs spread over several clusters (more likely to fill).",
    )
    limit = forms.CharField(
        label="Limit ($ per GPU-hour)",
        max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
        help_text="The most you will pay per GPU per hour, in dollars, e.g. 2.50. "
        "You pay the clearing price, which is never above your limit.",
        error_messages={"required": "Enter the most you will pay per GPU-hour, e.g. 2.50."},
    )

    def __init__(self, *args: Any, models: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["gpu_models"].choices = models  # type: ignore[attr-defined]
        slot = _slot_minutes()
        grid_words = "on the hour" if slot == 60 else f"on a {slot}-minute boundary"
        self.fields[
            "earliest_start"
        ].help_text = f"UTC, {grid_words}. Delivery starts no earlier than this, at the next free slot."
        self.fields[
            "latest_end"
        ].help_text = (
            f"UTC, {grid_words}. The GPUs are handed back by then; the window must fit the duration."
        )

    def clean_limit(self) -> int:
        text = self.cleaned_data["limit"].strip().lstrip("$").replace(",", "")
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise forms.ValidationError("Enter dollars per GPU-hour, e.g. 2.50.") from None
        if not amount.is_finite():
            raise forms.ValidationError("Enter dollars per GPU-hour, e.g. 2.50.")
        cents = amount * 100
        if cents != cents.to_integral_value():
            low = (cents.to_integral_value(rounding=ROUND_FLOOR) / 100).quantize(Decimal("0.01"))
            high = low + Decimal("0.01")
            raise forms.ValidationError(
                f"${text} is a fraction of a cent; prices are whole cents, e.g. {low} or {high}."
            )
        return int(cents)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("min_gpus") is None and data.get("gpus") is not None:
            data["min_gpus"] = data["gpus"]
        return data

    def spec(self, xor_group: str = "") -> BidSpec | None:
        """The bid these inputs describe, or None while a field cannot even be read."""
        d = self.cleaned_data
        needed = ("gpu_models", "gpus", "min_gpus", "duration_hours", "earliest_start", "latest_end", "limit")
        if any(d.get(k) is None for k in needed):
            return None
        return BidSpec(
            gpu_models=tuple(d["gpu_models"]),
            gpus=d["gpus"],
            min_gpus=d["min_gpus"],
            duration_hours=d["duration_hours"],
            earliest_start=d["earliest_start"].astimezone(dt.UTC),
            latest_end=d["latest_end"].astimezone(dt.UTC),
            colocate=bool(d.get("colocate")),
            limit_cents_per_gpu_hour=d["limit"],
            xor_group=xor_group,
        )

    def max_total_cents(self) -> int | None:
        """The most this row can cost: limit x GPUs x hours (None until those are readable)."""
        d = getattr(self, "cleaned_data", {})
        parts = [d.get("limit"), d.get("gpus"), d.get("duration_hours")]
        if any(not isinstance(p, int) or p <= 0 for p in parts):
            return None
        limit, gpus, hours = (int(p) for p in parts)  # type: ignore[arg-type]
        return limit * gpus * hours


BidRowFormSet = formset_factory(BidRowForm, extra=0, min_num=1, max_num=MAX_ROWS, validate_max=True)

# A service's field path (without the "bids[i]." prefix) to the form field it belongs to.
SERVICE_FIELDS = {
    "gpu_models": "gpu_models",
    "gpus": "gpus",
    "min_gpus": "min_gpus",
    "duration_hours": "duration_hours",
    "earliest_start": "earliest_start",
    "latest_end": "latest_end",
    "limit_cents_per_gpu_hour": "limit",
}
FIELD_WORDS = {
    "min_gpus": "minimum GPUs",
    "gpus": "GPUs",
    "duration_hours": "the duration",
    "earliest_start": "the earliest start",
    "latest_end": "the latest end",
}
_PATH = re.compile(r"^(?:bids\[(\d+)\]\.)?([a-z_]+)")


def _words(error: FieldError) -> str:
    """The service's message in the form's words (the API's messages name JSON fields)."""
    cap = int(settings.MAX_PRICE_CENTS_PER_GPU_HOUR)
    if error.code == "not_positive":
        return "Enter a limit above $0.00 per GPU-hour."
    if error.code == "absurd_price":
        return (
            f"That is above the market's cap of {dollars(cap)} per GPU-hour; "
            "check it is dollars per GPU per hour."
        )
    message = error.message
    for name, words in FIELD_WORDS.items():
        message = re.sub(rf"\b{name}\b", words, message)
    message = message[:1].upper() + message[1:]
    return message if message.endswith(".") else message + "."


def _place_errors(formset: Any, errors: list[FieldError], *, row: int | None = None) -> None:
    """Put each service FieldError next to its row's field (paths like `bids[2].min_gpus`)."""
    for error in errors:
        match = _PATH.match(error.field)
        index = row if row is not None else 0
        name = None
        if match:
            if match.group(1) is not None:
                index = int(match.group(1))
            name = SERVICE_FIELDS.get(match.group(2))
        if index >= len(formset.forms):
            index = 0
        form = formset.forms[index]
        if name and name in form.fields:
            if name not in form.errors:  # the form's own reading of the field comes first
                form.add_error(name, _words(error))
        else:
            form.add_error(None, _words(error))


def _models() -> list[tuple[str, str]]:
    return [(m.name, m.display_name) for m in GpuModel.objects.order_by("vendor", "name")]


def _formset(data: Any = None, *, initial: list[dict[str, Any]] | None = None) -> Any:
    return BidRowFormSet(data, initial=initial, prefix="row", form_kwargs={"models": _models()})


def _check(formset: Any, *, known: set[str]) -> list[BidSpec | None]:
    """Validate every row by the form and by the market's rules; the specs (None where unreadable)."""
    formset.is_valid()
    now = timezone.now()
    specs: list[BidSpec | None] = []
    for i, form in enumerate(formset.forms):
        spec = form.spec() if hasattr(form, "cleaned_data") else None
        specs.append(spec)
        if spec is not None:
            _place_errors(formset, market.bid_spec_errors(spec, now=now, known=known), row=i)
    return specs


def _quiet_untouched(formset: Any) -> None:
    """While typing, say nothing about fields the person has not filled in yet."""
    for form in formset.forms:
        for name in list(form.errors):
            if name == "__all__":
                continue
            value = form[name].value()
            raw = value if isinstance(value, list | tuple) else [value]
            if not any(v not in (None, "") for v in raw):
                del form.errors[name]


def _summary(formset: Any) -> dict[str, Any]:
    totals = [f.max_total_cents() for f in formset.forms]
    known = [t for t in totals if t is not None]
    return {"totals": totals, "max_total": max(known) if known else None, "rows": len(formset.forms)}


def _new_key() -> str:
    return uuid.uuid4().hex


def _default_row() -> dict[str, Any]:
    round_ = selectors.round_open_get()
    start = round_.horizon_start if round_ else grid.slot_ceil(timezone.now() + dt.timedelta(hours=1))
    return {
        "gpus": 8,
        "duration_hours": 4,
        "earliest_start": start,
        "latest_end": start + dt.timedelta(hours=12),
        "colocate": True,
    }


def _form_context(request: HttpRequest, formset: Any, **extra: Any) -> dict[str, Any]:
    return {
        "formset": formset,
        "summary": _summary(formset),
        "open_round": selectors.round_open_get(),
        "max_rows": MAX_ROWS,
        "idempotency_key": request.POST.get("idempotency_key") or _new_key(),
        **extra,
    }


def _placed_message(round_number: int | None) -> str:
    if round_number is None:
        return "it will be cleared in the next round to open"
    return f"it will be cleared in round {round_number}"


@team_required(roles=TRADERS)
def bid_new(request: HttpRequest) -> HttpResponse:
    """Place a bid, with optional "or" alternatives of which at most one wins."""
    if request.method != "POST":
        formset = _formset(initial=[_default_row()])
        return render(request, "buy/new.html", _form_context(request, formset))
    formset = _formset(request.POST)
    known = {name for name, _ in formset.form_kwargs["models"]}
    specs = _check(formset, known=known)
    key = request.POST.get("idempotency_key") or _new_key()
    if formset.is_valid() and all(s is not None for s in specs):
        team, actor = _team(request), _actor(request)
        try:
            if len(specs) == 1:
                spec = specs[0]
                assert spec is not None
                placed = services.bid_submit(team=team, actor=actor, spec=spec, idempotency_key=key)
                messages.success(
                    request, f"Bid {placed.order.pk} placed; {_placed_message(placed.round_number)}."
                )
                return redirect("buy-bid", bid_id=placed.order.pk)
            group = f"web-{key[:16]}"
            batch = services.bid_submit_batch(
                team=team,
                actor=actor,
                specs=[dataclasses.replace(s, xor_group=group) for s in specs if s is not None],
                idempotency_key=key,
            )
            ids = ", ".join(str(b.pk) for b in batch.bids)
            messages.success(
                request,
                f"Bids {ids} placed as alternatives (at most one wins); "
                f"{_placed_message(batch.round_number)}.",
            )
            return redirect("buy-bids")
        except InvalidInput as error:
            _place_errors(formset, error.errors)
        except DomainError as error:
            formset.forms[0].add_error(None, error.message)
    return render(request, "buy/new.html", _form_context(request, formset), status=422)


@require_POST
@team_required(roles=TRADERS)
def bid_validate(request: HttpRequest) -> HttpResponse:
    """As you type: every row's errors next to its fields and the live maximum total (htmx OOB swaps)."""
    formset = _formset(request.POST)
    _check(formset, known={name for name, _ in formset.form_kwargs["models"]})
    _quiet_untouched(formset)
    return render(request, "buy/_validate.html", {"formset": formset, "summary": _summary(formset)})


@require_POST
@team_required(roles=TRADERS)
def bid_rows(request: HttpRequest) -> HttpResponse:
    """Add an "or" row or remove one; the form comes back with what was typed kept."""
    data = request.POST.copy()
    total = int(data.get("row-TOTAL_FORMS") or 1)
    action = data.get("rows", "")
    if action == "add" and total < MAX_ROWS:
        # The new alternative starts as a copy of the first row: usually only one thing differs.
        for name in ("gpus", "min_gpus", "duration_hours", "earliest_start", "latest_end", "limit"):
            data[f"row-{total}-{name}"] = data.get(f"row-0-{name}", "")
        data.setlist(f"row-{total}-gpu_models", data.getlist("row-0-gpu_models"))
        if data.get("row-0-colocate"):
            data[f"row-{total}-colocate"] = "on"
        total += 1
    elif action.startswith("remove-") and total > 1:
        gone = int(action.removeprefix("remove-"))
        rows = [
            {k.split("-", 2)[2]: data.getlist(k) for k in data if k.startswith(f"row-{i}-")}
            for i in range(total)
            if i != gone
        ]
        for key in [k for k in data if k.startswith("row-") and not k.startswith("row-TOTAL")]:
            if not key.endswith(("_FORMS",)):
                del data[key]
        for i, row in enumerate(rows):
            for name, values in row.items():
                data.setlist(f"row-{i}-{name}", values)
        total -= 1
    data["row-TOTAL_FORMS"] = str(total)
    formset = _formset(data)
    _check(formset, known={name for name, _ in formset.form_kwargs["models"]})
    _quiet_untouched(formset)
    return render(request, "buy/_form.html", _form_context(request, formset))


@require_POST
@team_required(roles=TRADERS)
def bid_preview(request: HttpRequest) -> HttpResponse:
    """ "Would this have won last round?" for each row, in a sentence (nothing is stored)."""
    formset = _formset(request.POST)
    formset.is_valid()
    answers: list[dict[str, Any]] = []
    for i, form in enumerate(formset.forms):
        spec = form.spec() if hasattr(form, "cleaned_data") else None
        row = {"index": i + 1, "sentence": "", "ok": False}
        if spec is None:
            row["sentence"] = "Fill in this row's fields first."
        else:
            try:
                answer = preview.bid_preview(team=_team(request), spec=spec)
            except InvalidInput as error:
                row["sentence"] = "Fix this row first: " + " ".join(_words(e) for e in error.errors)
            except NotFound as error:
                row["sentence"] = error.message[:1].upper() + error.message[1:] + "."
            else:
                row["ok"] = bool(answer["would_win"])
                row["sentence"] = preview_sentence(answer, limit_cents=spec.limit_cents_per_gpu_hour)
        answers.append(row)
    return render(request, "buy/_preview.html", {"answers": answers, "many": len(answers) > 1})


def preview_sentence(answer: dict[str, Any], *, limit_cents: int) -> str:
    if answer["would_win"]:
        where = f" in cluster {answer['cluster']}" if answer.get("cluster") else ""
        return (
            f"Yes. In round {answer['round']} it would have won {answer['gpus']} × {answer['gpu_model']}"
            f"{where} from {answer['start']:%Y-%m-%d %H:%M} to {answer['end']:%Y-%m-%d %H:%M} UTC, "
            f"paying {dollars(answer['payment_cents'])} in total "
            f"({dollars(answer['cents_per_gpu_hour'])} per GPU-hour; your limit is {dollars(limit_cents)})."
        )
    return f"No, not in round {answer['round']}. " + reason_sentence(
        answer.get("reason") or "", answer.get("detail"), limit_cents=limit_cents
    )


# --- my bids ---------------------------------------------------------------------------------------


def _latest(bid: Bid) -> Any:
    outcomes = list(bid.outcomes.all())
    return outcomes[-1] if outcomes else None


def _bid_row(bid: Bid, open_round: int | None) -> dict[str, Any]:
    outcome = _latest(bid)
    sentence = ""
    if outcome is not None and outcome.outcome == "lost":
        sentence = reason_sentence(outcome.reason, outcome.detail, limit_cents=bid.limit_cents_per_gpu_hour)
    lease = getattr(bid, "lease", None) if bid.status == BidStatus.WON else None
    if bid.status == BidStatus.OPEN:
        round_number = open_round
    else:
        round_number = outcome.round.number if outcome is not None else None
    return {
        "bid": bid,
        "models": sorted(m.name for m in bid.gpu_models.all()),
        "outcome": outcome,
        "sentence": sentence,
        "lease": lease,
        "round": round_number,
        "max_total": bid.limit_cents_per_gpu_hour * bid.gpus * bid.duration_hours,
    }


@require_GET
@team_required()
def bid_list(request: HttpRequest) -> HttpResponse:
    """My team's bids, newest first, filtered by status, with the latest outcome and its reason."""
    status = request.GET.get("status") or None
    if status not in BidStatus.values:
        status = None
    page = paginate(request, selectors.bid_rows_for_team(team=_team(request), status=status))
    open_round = selectors.round_open_get()
    number = open_round.number if open_round else None
    return render(
        request,
        "buy/bids.html",
        {
            "page": page,
            "rows": [_bid_row(b, number) for b in page.object_list],
            "status": status or "",
            "statuses": BidStatus.choices,
            "can_trade": getattr(request, "role", None) in TRADERS,
        },
    )


def _team_bid(request: HttpRequest, bid_id: int) -> Bid:
    bid = selectors.bid_rows_for_team(team=_team(request)).filter(pk=bid_id).first()
    if bid is None:
        raise Http404("No such bid in your team.")
    return bid


@require_GET
@team_required()
def bid_detail(request: HttpRequest, bid_id: int) -> HttpResponse:
    """One bid: terms, every round's outcome with its reason, the lease, the receipt and its proof."""
    bid = _team_bid(request, bid_id)
    open_round = selectors.round_open_get()
    row = _bid_row(bid, open_round.number if open_round else None)
    outcomes = [
        {
            "outcome": o,
            "sentence": reason_sentence(o.reason, o.detail, limit_cents=bid.limit_cents_per_gpu_hour)
            if o.outcome == "lost"
            else "",
        }
        for o in bid.outcomes.all()
    ]
    proof = _proof(request, bid)
    return render(
        request,
        "buy/bid.html",
        {
            **row,
            "outcomes": outcomes,
            "proof": proof,
            "can_trade": getattr(request, "role", None) in TRADERS,
        },
    )


def _proof(request: HttpRequest, bid: Bid) -> dict[str, Any] | None:
    outcomes = list(bid.outcomes.all())
    if not outcomes:
        return None
    try:
        return selectors.bid_inclusion_proof(
            team=_team(request),
            bid_id=bid.pk,
            round_number=outcomes[-1].round.number,
        )
    except NotFound:
        return None


@require_GET
@team_required()
def bid_proof(request: HttpRequest, bid_id: int) -> HttpResponse:
    """The receipt and inclusion proof as the JSON file `gridx receipt_verify` checks."""
    proof = _proof(request, _team_bid(request, bid_id))
    if proof is None:
        raise Http404("This bid has not been in a cleared round yet.")
    response = JsonResponse(proof, json_dumps_params={"indent": 2, "sort_keys": True})
    response["Content-Disposition"] = f'attachment; filename="bid-{bid_id}-proof.json"'
    return response


@require_POST
@team_required(roles=TRADERS)
def bid_cancel(request: HttpRequest, bid_id: int) -> HttpResponse:
    """Withdraw an open bid (refused while a closed round is clearing it)."""
    try:
        bid = services.bid_withdraw(team=_team(request), actor=_actor(request), bid_id=bid_id)
    except NotFound:
        raise Http404("No such bid in your team.") from None
    except DomainError as error:
        messages.error(request, f"Bid {bid_id} was not cancelled: {error.message}.")
    else:
        messages.success(request, f"Bid {bid.pk} cancelled.")
    return redirect(request.POST.get("next") or reverse("buy-bids"))


def _initial_of(bid: Bid) -> dict[str, Any]:
    return {
        "gpu_models": sorted(m.name for m in bid.gpu_models.all()),
        "gpus": bid.gpus,
        "min_gpus": bid.min_gpus,
        "duration_hours": bid.duration_hours,
        "earliest_start": bid.earliest_start,
        "latest_end": bid.latest_end,
        "colocate": bid.colocate,
        "limit": dollars(bid.limit_cents_per_gpu_hour)[1:].replace(",", ""),
    }


@team_required(roles=TRADERS)
def bid_edit(request: HttpRequest, bid_id: int) -> HttpResponse:
    """Replace an open bid with new terms, atomically (the old one becomes `replaced`)."""
    bid = _team_bid(request, bid_id)
    if request.method != "POST":
        formset = _formset(initial=[_initial_of(bid)])
        return render(request, "buy/new.html", _form_context(request, formset, replacing=bid))
    formset = _formset(request.POST)
    specs = _check(formset, known={name for name, _ in formset.form_kwargs["models"]})
    if formset.is_valid() and len(specs) == 1 and specs[0] is not None:
        spec = dataclasses.replace(specs[0], xor_group=bid.xor_group)
        try:
            placed = services.bid_resubmit(
                team=_team(request),
                actor=_actor(request),
                bid_id=bid.pk,
                spec=spec,
                idempotency_key=request.POST.get("idempotency_key") or _new_key(),
            )
        except InvalidInput as error:
            _place_errors(formset, error.errors)
        except DomainError as error:
            formset.forms[0].add_error(None, error.message)
        else:
            messages.success(
                request,
                f"Bid {bid.pk} replaced by bid {placed.order.pk}; {_placed_message(placed.round_number)}.",
            )
            return redirect("buy-bid", bid_id=placed.order.pk)
    return render(request, "buy/new.html", _form_context(request, formset, replacing=bid), status=422)


# --- my leases ---------------------------------------------------------------------------------------


@require_GET
@team_required()
def lease_list(request: HttpRequest) -> HttpResponse:
    """Leases my team bought, newest first, with price and verified delivered GPU-seconds."""
    page = paginate(request, selectors.lease_list_for_buyer(team=_team(request)))
    rows = []
    for lease in page.object_list:
        hours = lease.gpus * (lease.end - lease.start).total_seconds() / 3600
        rows.append(
            {
                "lease": lease,
                "unit_cents": lease.payment_cents / hours if hours else None,
                "delivered_s": (lease.delivered_ms or 0) // 1000,
                "leased_s": int(lease.gpus * (lease.end - lease.start).total_seconds()),
            }
        )
    return render(request, "buy/leases.html", {"page": page, "rows": rows})


@require_GET
@team_required()
def lease_detail(request: HttpRequest, lease_id: int) -> HttpResponse:
    """One lease: GPUs, times, price, delivered GPU-seconds and a live delivery chart."""
    try:
        lease = selectors.lease_get(team=_team(request), lease_id=lease_id)
        usage = lease_usage(team=_team(request), lease_id=lease_id)
    except NotFound:
        raise Http404("No such lease in your team.") from None
    hours = lease.gpus * (lease.end - lease.start).total_seconds() / 3600
    return render(
        request,
        "buy/lease.html",
        {
            "lease": lease,
            "usage": usage,
            "unit_cents": lease.payment_cents / hours if hours else None,
            "gpus": _gpu_rows(lease, usage),
            "chart_url": reverse("usage-lease-json", args=[lease.pk]),
            "chart_initial": json.dumps({"leased_gpu_seconds": usage["leased_gpu_seconds"]}),
        },
    )


def _gpu_rows(lease: Any, usage: dict[str, Any]) -> list[dict[str, Any]]:
    """Each GPU's assignment times beside its delivery (usage lists GPUs by uuid)."""
    times = {lg.gpu.uuid: lg for lg in lease.lease_gpus.all()}
    return [
        {**g, "start": times[g["uuid"]].start, "end": times[g["uuid"]].end}
        for g in usage["gpus"]
        if g["uuid"] in times
    ]
