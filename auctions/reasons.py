"""Why a bid lost, in a sentence a person can act on: the one place the engine's reasons are worded.

The engine's vocabulary (docs/engine.md, "Losers: the reason vocabulary") is `no_offer`,
`limit_below_reserve`, `outbid`, `xor_sibling_won` and `time_limit`; a preview adds
`outside_horizon` and `not_cleared`. Pages and e-mails call `reason_sentence` rather than word
the reasons themselves, so the advice stays the same everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marketplace.web import dollars


def _bid_ref(ref: object) -> str:
    text = str(ref or "")
    return f"bid {text[1:]}" if text.startswith("b") and text[1:].isdigit() else "another of your bids"


def reason_sentence(
    reason: str, detail: Mapping[str, Any] | None = None, *, limit_cents: int | None = None
) -> str:
    """The loser's reason with what the bidder can change; `limit_cents` is the bid's own limit."""
    detail = detail or {}
    needed = detail.get("price_needed_cents_per_gpu_hour")
    yours = f" (your limit was {dollars(limit_cents)})" if limit_cents is not None else ""
    if reason == "no_offer":
        return (
            "No offer could serve it: nothing on offer matched its GPU model, window and size. "
            "Try more GPU models, a wider window, a shorter duration, fewer minimum GPUs, "
            "or allow GPUs from several clusters."
        )
    if reason == "limit_below_reserve":
        return (
            f"Its limit{yours} is at or below every matching seller's reserve price. "
            "Raise the limit to take part."
        )
    if reason == "outbid":
        if needed is not None:
            return (
                f"Outbid: the GPUs went to bids worth more. Bid at least {dollars(needed)} per GPU-hour"
                f"{yours}, or widen the window."
            )
        return f"Outbid: the GPUs went to bids worth more{yours}. Raise the limit or widen the window."
    if reason == "xor_sibling_won":
        return (
            f"One of its alternatives ({_bid_ref(detail.get('xor_winner'))}) won, and at most one of a "
            "group can win. Nothing to do."
        )
    if reason == "time_limit":
        advice = f"bid at least {dollars(needed)} per GPU-hour" if needed is not None else "raise the limit"
        return (
            "The round ran out of solving time before it could prove this bid wins. It stays open for "
            f"the next round; to improve its chances {advice}{yours}, or loosen the bid."
        )
    if reason == "outside_horizon":
        return (
            "Its window lies outside that round's delivery horizon "
            f"({detail.get('horizon_start', '?')} to {detail.get('horizon_end', '?')}); move the window."
        )
    if reason == "not_cleared":
        return "The clearing did not place it. Try again after the next round."
    return f"It did not win ({reason or 'no reason given'})."
