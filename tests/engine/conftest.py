"""Engine tests need no database and no Django: rounds come from ../shared/data/rounds."""

from __future__ import annotations

import json
from typing import Any

import pytest

from auctions.engine.cli import default_rounds_dir


def load_round(name: str) -> dict[str, Any]:
    path = default_rounds_dir() / f"{name}.json"
    if not path.exists():
        pytest.skip(f"sample round {path} is not available")
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


@pytest.fixture
def tiny() -> dict[str, Any]:
    return load_round("tiny")
