"""Gridx clearing engine: gridx.round/v1 in, gridx.result/v1 out (docs/engine.md).

Pure Python + numpy/scipy/cvxpy (HiGHS). Imports nothing from Django (STYLE.md rule 10).

The names below load `clearing` (and with it numpy and HiGHS: ~0.3 s and ~14,000 objects; cvxpy
and scipy, another ~1.1 s and ~62,000, only on the paths that use them, `solve.py`) on first
use, not on `import auctions.engine`: a web process imports the
services that call the engine, yet places bids for hours without clearing anything, and every
object it holds is one more for each full garbage collection to scan. Celery workers, which
clear rounds, load it at start (auctions/tasks.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .clearing import DEFAULT_GAP, clear, dumps_result, merge, split

__all__ = ["DEFAULT_GAP", "clear", "dumps_result", "merge", "split"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import clearing

        return getattr(clearing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
