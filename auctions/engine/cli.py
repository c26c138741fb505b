"""`gridx clear` and `gridx bench` (dispatched here by config/cli.py)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .clearing import DEFAULT_GAP, clear, dumps_result

log = logging.getLogger("gridx.engine")

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def default_rounds_dir() -> Path:
    """`../shared/data/rounds/` next to the repository (overridden by GRIDX_ROUNDS_DIR)."""
    env = os.environ.get("GRIDX_ROUNDS_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parent.parent.parent
    return repo.parent / "shared" / "data" / "rounds"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gridx", description="Gridx clearing engine")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("clear", help="clear a gridx.round/v1 file; the result JSON goes to stdout")
    c.add_argument("round", help="ROUND.json ('-' for stdin)")
    c.add_argument("--time-limit", type=float, default=None, metavar="SECONDS")
    c.add_argument("--gap", type=float, default=DEFAULT_GAP, metavar="FRACTION")
    c.add_argument("--solver", default="HIGHS")
    c.add_argument("--workers", type=int, default=None)
    c.add_argument("--out", default=None, metavar="RESULT.json", help="also write the result here")
    b = sub.add_parser("bench", help="benchmark the engine against a greedy pass and plain HiGHS")
    b.add_argument("rounds", nargs="*", help="round files (default: every file in the shared rounds dir)")
    b.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="per round, for the engine and for plain HiGHS (default: by size, see docs)",
    )
    b.add_argument("--gap", type=float, default=DEFAULT_GAP)
    b.add_argument("--no-direct", action="store_true", help="skip the plain-HiGHS baseline")
    b.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")
    return p


def _clear(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.round == "-" else Path(args.round).read_text(encoding="utf-8")
        doc: Any = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.error("cannot read %s: %s", args.round, exc)
        from .clearing import empty_result

        result = empty_result(None, "infeasible_input", f"(file): {exc}", [f"(file): {exc}"])
        sys.stdout.write(dumps_result(result))
        return EXIT_BAD_INPUT
    result = clear(doc, time_limit=args.time_limit, gap=args.gap, solver=args.solver, workers=args.workers)
    text_out = dumps_result(result)
    if args.out:
        Path(args.out).write_text(text_out, encoding="utf-8")
    sys.stdout.write(text_out)
    st = result["stats"]
    log.info(
        "%s: %s welfare=%s bound=%s wall=%.2fs",
        result.get("round"),
        result["status"],
        result["welfare_cents"],
        result["bound_cents"],
        float(st.get("wall_s", 0.0)),
    )
    if result["status"] == "infeasible_input":
        for line in str(result.get("message", "")).splitlines():
            log.error("%s", line)
        return EXIT_BAD_INPUT
    return EXIT_OK if result["status"] in ("optimal", "time_limit") else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point: `main(["clear", "round.json"])` or `main(["bench"])`."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    if args.command == "clear":
        return _clear(args)
    from .bench import run_bench

    files = [Path(f) for f in args.rounds] or sorted(default_rounds_dir().glob("*.json"))
    return run_bench(
        files, time_limit=args.time_limit, gap=args.gap, direct=not args.no_direct, json_out=args.json
    )


if __name__ == "__main__":
    sys.exit(main())
