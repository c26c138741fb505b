"""`python -m billing.stripe_standin --port 12111 --webhook-url URL --webhook-secret whsec_…`."""

from __future__ import annotations

import sys

from .server import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
