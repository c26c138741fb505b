"""`verify_round`'s re-clearing check: byte-identical when the clearing is reproducible, and
otherwise each run's welfare within the other's proven bound (docs/rounds.md, *How to verify a
round*). Pure functions: no database."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from auctions import engine, verify

ROUNDS = Path(__file__).resolve().parents[3] / "shared" / "data" / "rounds"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _published(result: dict[str, Any]) -> tuple[str, str, str]:
    snapshot = (ROUNDS / "tiny.json").read_text()
    result_text = engine.dumps_result(result)
    report = {
        "snapshot_sha256": _sha(snapshot),
        "result_sha256": verify.result_hash(result),
        "previous_report_sha256": "0" * 64,
        "solver": {"time_limit_s": 10, "gap": 1e-4},
    }
    return json.dumps(report), snapshot, result_text


def _verdict(result: dict[str, Any]) -> verify.Verdict:
    report, snapshot, result_text = _published(result)
    return verify.verify_round(
        report_text=report, snapshot_text=snapshot, result_text=result_text, previous_report_text=None
    )


@pytest.fixture
def tiny_result() -> dict[str, Any]:
    return engine.clear(json.loads((ROUNDS / "tiny.json").read_text()), time_limit=10)


def test_a_reproducible_clearing_is_re_cleared_byte_for_byte(tiny_result):
    verdict = _verdict(tiny_result)
    assert verdict.ok, verdict.failures
    assert "re-clearing the snapshot reproduces the result" in verdict.checked


def test_a_time_dependent_clearing_is_checked_against_the_re_clearings_bound(tiny_result):
    # a time-limited run published a worse clearing than the re-clearing finds: not byte-identical,
    # but consistent (its welfare is below the re-clearing's proven bound, and the other way round)
    published = {**tiny_result, "status": "time_limit", "welfare_cents": tiny_result["welfare_cents"] - 500}
    verdict = _verdict(published)
    assert verdict.ok, verdict.failures
    assert "re-clearing the snapshot reproduces the result" not in verdict.checked
    assert any(c.startswith("re-clearing differs") for c in verdict.checked)


def test_a_published_welfare_above_the_re_clearings_proven_bound_fails(tiny_result):
    # a result claiming more welfare than the re-clearing proves possible cannot be right
    published = {**tiny_result, "status": "time_limit", "welfare_cents": tiny_result["bound_cents"] + 1}
    verdict = _verdict(published)
    assert not verdict.ok
    assert any(f.startswith("re-clearing differs") for f in verdict.failures)


def test_a_re_clearing_above_the_published_bound_fails(tiny_result):
    # the published bound was not a bound: the re-clearing found more
    published = {
        **tiny_result,
        "status": "time_limit",
        "bound_cents": tiny_result["welfare_cents"] - 1,
        "welfare_cents": tiny_result["welfare_cents"] - 1,
    }
    verdict = _verdict(published)
    assert not verdict.ok
