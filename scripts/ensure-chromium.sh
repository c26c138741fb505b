#!/usr/bin/env bash
# Make sure a headless Chromium is available for tests/e2e: use CHROMIUM if set, else Debian's
# /usr/bin/chromium, installing the package when absent and we are root. Idempotent.
set -euo pipefail
if [ -n "${CHROMIUM:-}" ] && [ -x "$CHROMIUM" ]; then exit 0; fi
if command -v chromium >/dev/null; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "ensure-chromium: chromium is not installed and I cannot install it (need root and apt-get)." >&2
  echo "  Install Debian's chromium package, or set CHROMIUM to a Chromium binary." >&2
  exit 1
fi
echo "ensure-chromium: installing chromium from Debian's packages"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
