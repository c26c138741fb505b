"""Sealed-bid receipts: a salted SHA-256 commitment to a bid's exact terms.

The owner keeps the receipt and its salt; the round publishes only the Merkle root of receipts, so
nobody else learns the bid, yet the owner can prove it was in the round exactly as placed.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from .models import Bid


def bid_receipt_document(bid: Bid, *, gpu_models: list[str] | None = None) -> dict[str, Any]:
    """The canonical content a receipt commits to."""
    models = gpu_models if gpu_models is not None else [m.name for m in bid.gpu_models.all()]
    return {
        "format": "gridx.bid-receipt/v1",
        "bid": bid.pk,
        "team": bid.team.slug,
        "gpu_models": sorted(models),
        "gpus": bid.gpus,
        "min_gpus": bid.min_gpus,
        "duration_hours": bid.duration_hours,
        "earliest_start": bid.earliest_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "latest_end": bid.latest_end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "colocate": bid.colocate,
        "limit_cents_per_gpu_hour": bid.limit_cents_per_gpu_hour,
        "currency": bid.currency,
        "xor_group": bid.xor_group,
        "salt": bid.receipt_salt,
    }


def canonical_json(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def receipt_of(document: dict[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of a receipt document."""
    return hashlib.sha256(canonical_json(document)).hexdigest()


def new_salt() -> str:
    return secrets.token_hex(16)
