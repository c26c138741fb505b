"""Fetch the pinned static libraries (htmx, Chart.js) from the npm registry into static/vendor/.

The versions, tarball URLs and sha512 integrity strings live in static/vendor.lock.json, so a
tampered or changed tarball is refused. Files already present with the locked version are kept,
so `make install` is quick and works offline once the files are here. Standard library only: it runs
before anything else is installed and needs no Node.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "static" / "vendor.lock.json"
DEST = ROOT / "static" / "vendor"


def _check_integrity(data: bytes, integrity: str, name: str) -> None:
    algo, _, expected = integrity.partition("-")
    if algo != "sha512":
        raise SystemExit(f"fetch_static: {name}: only sha512 integrity is supported, got {algo!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise SystemExit(f"fetch_static: {name}: integrity mismatch (expected {expected}, got {actual})")


def fetch(package: dict[str, object]) -> None:
    name, version = str(package["name"]), str(package["version"])
    files = dict(package["files"])  # type: ignore[call-overload]
    stamp = DEST / f".{name.replace('/', '_')}.version"
    if (
        stamp.exists()
        and stamp.read_text() == version
        and all((DEST / out).exists() for out in files.values())
    ):
        return
    with urllib.request.urlopen(str(package["tarball"]), timeout=60) as response:  # noqa: S310 (pinned https URL)
        data = response.read()
    _check_integrity(data, str(package["integrity"]), name)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member, out in files.items():
            extracted = archive.extractfile(member)
            if extracted is None:
                raise SystemExit(f"fetch_static: {name}@{version} has no file {member}")
            (DEST / out).write_bytes(extracted.read())
    stamp.write_text(version)
    sys.stdout.write(f"fetch_static: {name}@{version}\n")


def main() -> int:
    DEST.mkdir(parents=True, exist_ok=True)
    for package in json.loads(LOCK.read_text())["packages"]:
        fetch(package)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
