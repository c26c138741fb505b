"""Engine tests need no database and no Django: rounds are copies in tests/data/rounds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROUNDS = Path(__file__).resolve().parent.parent / "data" / "rounds"


def load_round(name: str) -> dict[str, Any]:
    path = ROUNDS / f"{name}.json"
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


@pytest.fixture
def tiny() -> dict[str, Any]:
    return load_round("tiny")
