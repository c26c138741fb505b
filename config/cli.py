"""The `gridx` command: engine subcommands without Django, the demo, and Django's commands.

gridx clear ROUND.json [...]   clear a gridx.round/v1 file (no database needed)
gridx bench [ROUND.json ...]   benchmark the clearing engine
gridx demo                     run the embedded demo market (web, worker, beat)
gridx <command> [...]          any manage.py command, e.g. `gridx migrate`
"""

from __future__ import annotations

import os
import sys

ENGINE_COMMANDS = {"clear", "bench"}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        sys.stdout.write(__doc__ or "")
        return 0
    if args[0] in ENGINE_COMMANDS:
        # Imported lazily: the engine must run on machines without Django configured.
        from auctions.engine.cli import main as engine_main

        return int(engine_main(args))
    if args[0] == "demo":
        from config.demo import main as demo_main

        return demo_main(args[1:])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["gridx", *args])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
