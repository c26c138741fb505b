"""Checks anyone can run on a published round: hashes, the report chain, re-clearing, receipts.

Pure functions over the published texts (no Django), so an outside auditor can use them as is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from auctions import engine

from . import merkle


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def result_hash(result: dict[str, Any]) -> str:
    """SHA-256 of the result's canonical text without `stats` (timings differ between runs)."""
    return _sha(engine.dumps_result({k: v for k, v in result.items() if k != "stats"}))


@dataclass
class Verdict:
    """What was checked and what failed; `ok` when nothing failed."""

    checked: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def check(self, condition: bool, what: str) -> None:
        self.checked.append(what)
        if not condition:
            self.failures.append(what)


def verify_round(
    *,
    report_text: str,
    snapshot_text: str,
    result_text: str,
    previous_report_text: str | None,
    reclear: bool = True,
    time_limit: float | None = None,
    gap: float | None = None,
) -> Verdict:
    """Check a round's report against its snapshot, result and the previous report."""
    verdict = Verdict()
    report = json.loads(report_text)
    verdict.check(_sha(snapshot_text) == report["snapshot_sha256"], "snapshot SHA-256 matches the report")
    result = json.loads(result_text)
    verdict.check(result_hash(result) == report["result_sha256"], "result SHA-256 matches the report")
    expected_previous = _sha(previous_report_text) if previous_report_text is not None else "0" * 64
    verdict.check(
        report["previous_report_sha256"] == expected_previous, "report chains to the previous report"
    )
    if reclear:
        again = engine.clear(
            json.loads(snapshot_text),
            time_limit=time_limit if time_limit is not None else float(report["solver"]["time_limit_s"]),
            gap=gap if gap is not None else report["solver"]["gap"],
            workers=1,
        )
        if result_hash(again) == report["result_sha256"]:
            verdict.check(True, "re-clearing the snapshot reproduces the result")
        else:
            # A clearing that hit a time limit, or whose MIP handed over to the search, depends on
            # the machine's speed (docs/engine.md, *Determinism*): it cannot be reproduced byte for
            # byte, but both runs carry a proven bound, and neither may claim more welfare than
            # the other proves possible.
            verdict.check(
                again.get("status") in ("optimal", "time_limit"), "re-clearing the snapshot gives a clearing"
            )
            verdict.check(
                result["welfare_cents"] <= again.get("bound_cents", -1)
                and again.get("welfare_cents", 0) <= result["bound_cents"],
                "re-clearing differs (a time-dependent clearing), and each run's welfare is within the "
                f"other's proven bound (published {result['welfare_cents']} <= {again.get('bound_cents')}, "
                f"re-cleared {again.get('welfare_cents')} <= {result['bound_cents']})",
            )
    return verdict


def verify_receipt(
    *, receipt_document: dict[str, Any], receipt: str, proof: list[dict[str, str]], root: str
) -> Verdict:
    """Check that a bid's terms hash to its receipt and that the receipt is under the round's root."""
    verdict = Verdict()
    canonical = json.dumps(receipt_document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    verdict.check(_sha(canonical) == receipt, "bid terms hash to the receipt")
    verdict.check(
        merkle.verify_inclusion(receipt, proof, root), "receipt is included under the round's Merkle root"
    )
    return verdict
