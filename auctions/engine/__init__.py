"""Gridx clearing engine: gridx.round/v1 in, gridx.result/v1 out (docs/engine.md).

Pure Python + numpy/scipy/cvxpy (HiGHS). Imports nothing from Django (STYLE.md rule 10).
"""

from .clearing import DEFAULT_GAP, clear, dumps_result, merge, split

__all__ = ["DEFAULT_GAP", "clear", "dumps_result", "merge", "split"]
