"""The on-disk outbox: envelopes are written here before they are sent, deleted only once acked.

SQLite in WAL mode with synchronous=FULL: a committed envelope survives kill -9 and power loss.
The sequence number and the previous hash are taken from, and advanced in, the same transaction
that stores the envelope, so a crash can never leave a gap or a fork in the hash chain. The open
interval's checkpoint lives in the same database and is replaced in that transaction too, so a
measurement is either in the checkpoint or in an envelope, never in both and never in neither.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from metering.agent.protocol import GENESIS_HASH, IntervalReport, envelope_body, envelope_hash

DEFAULT_MAX_ENVELOPES = 100_000  # about 69 days of one envelope a minute
WARN_FRACTION = 0.8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS envelope (
    seq INTEGER PRIMARY KEY,
    body BLOB NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS refused (
    seq INTEGER PRIMARY KEY,
    body BLOB NOT NULL,
    code TEXT NOT NULL,
    detail TEXT NOT NULL,
    refused_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class OutboxFull(Exception):
    """The outbox holds its maximum; the new envelope was not stored (and got no sequence number)."""


@dataclass(frozen=True)
class Queued:
    seq: int
    body: bytes


@dataclass(frozen=True)
class OutboxStatus:
    queued: int
    oldest_seq: int | None
    newest_seq: int | None
    last_seq: int
    max_envelopes: int
    refused: int
    dropped_reports: int
    last_ack_seq: int
    last_ack_at: str | None
    last_error: str | None
    last_error_at: str | None
    checkpoint: bool


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Outbox:
    """One SQLite file; one instance per thread (sqlite3 connections are not shared)."""

    def __init__(self, path: Path, *, max_envelopes: int = DEFAULT_MAX_ENVELOPES) -> None:
        self.path = path
        self.max_envelopes = max_envelopes
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so that the writer lock is taken
        # up front and two threads cannot both read the chain head and both extend it.
        self.db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    def _queued_count(self) -> int:
        # Rows are deleted only as a prefix (acked seqs), so the count is max - min + 1, without a scan.
        row = self.db.execute("SELECT min(seq), max(seq) FROM envelope").fetchone()
        return 0 if row[0] is None else int(row[1]) - int(row[0]) + 1

    # --- writing --------------------------------------------------------------------------------

    def append(
        self,
        *,
        host_id: str,
        agent_version: str,
        reports: list[IntervalReport],
        checkpoint: dict[str, Any] | None,
        created_at: datetime,
        on_full: Callable[[int], None] | None = None,
    ) -> int | None:
        """Store one envelope of `reports` and replace the checkpoint, atomically; its seq or None.

        When the outbox is full the reports are dropped (counted in `dropped_reports`) rather than
        the oldest envelopes: dropping old ones would punch a hole in the chain that the server has
        to treat as missing time anyway, and the newest data is just as billable. Either way it is
        loud: `on_full` is called so the runner can log an error every time.
        """
        with self._tx() as db:
            if self._queued_count() >= self.max_envelopes:
                dropped = int(self._get("dropped_reports") or 0) + len(reports)
                self._set("dropped_reports", str(dropped))
                self._set_checkpoint(checkpoint)
                if on_full is not None:
                    on_full(dropped)
                return None
            seq = int(self._get("last_seq") or 0) + 1
            prev_hash = self._get("last_hash") or GENESIS_HASH
            body = envelope_body(
                host_id=host_id,
                seq=seq,
                prev_hash=prev_hash,
                agent_version=agent_version,
                created_at=created_at,
                reports=reports,
            )
            db.execute(
                "INSERT INTO envelope (seq, body, created_at) VALUES (?, ?, ?)",
                (seq, body, _now_iso()),
            )
            self._set("last_seq", str(seq))
            self._set("last_hash", envelope_hash(body))
            self._set_checkpoint(checkpoint)
            return seq

    def save_checkpoint(self, checkpoint: dict[str, Any] | None) -> None:
        with self._tx():
            self._set_checkpoint(checkpoint)

    def _set_checkpoint(self, checkpoint: dict[str, Any] | None) -> None:
        if checkpoint is None:
            self.db.execute("DELETE FROM kv WHERE key = 'checkpoint'")
        else:
            self._set("checkpoint", json.dumps(checkpoint, separators=(",", ":")))

    def load_checkpoint(self) -> dict[str, Any] | None:
        raw = self._get("checkpoint")
        if raw is None:
            return None
        value = json.loads(raw)
        return value if isinstance(value, dict) else None

    # --- sending ----------------------------------------------------------------------------------

    def next_after(self, seq: int) -> Queued | None:
        """The oldest queued envelope with a sequence number above `seq`."""
        row = self.db.execute(
            "SELECT seq, body FROM envelope WHERE seq > ? ORDER BY seq LIMIT 1", (seq,)
        ).fetchone()
        return None if row is None else Queued(int(row[0]), bytes(row[1]))

    def ack(self, acked_seq: int) -> int:
        """Delete every envelope up to and including `acked_seq`; how many were deleted."""
        with self._tx() as db:
            deleted = db.execute("DELETE FROM envelope WHERE seq <= ?", (acked_seq,)).rowcount
            if acked_seq > int(self._get("last_ack_seq") or 0):
                self._set("last_ack_seq", str(acked_seq))
            self._set("last_ack_at", _now_iso())
            return int(deleted)

    def refuse(self, seq: int, code: str, detail: str) -> None:
        """Keep a copy of an envelope the server refused for good, for the operator and disputes."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO refused (seq, body, code, detail, refused_at) "
                "SELECT seq, body, ?, ?, ? FROM envelope WHERE seq = ?",
                (code, detail, _now_iso(), seq),
            )

    def record_error(self, message: str) -> None:
        with self._tx():
            self._set("last_error", message)
            self._set("last_error_at", _now_iso())

    # --- reading ----------------------------------------------------------------------------------

    def status(self) -> OutboxStatus:
        row = self.db.execute("SELECT count(*), min(seq), max(seq) FROM envelope").fetchone()
        refused = self.db.execute("SELECT count(*) FROM refused").fetchone()[0]
        last_ack = self._get("last_ack_seq")
        return OutboxStatus(
            queued=int(row[0]),
            oldest_seq=row[1],
            newest_seq=row[2],
            last_seq=int(self._get("last_seq") or 0),
            max_envelopes=self.max_envelopes,
            refused=int(refused),
            dropped_reports=int(self._get("dropped_reports") or 0),
            last_ack_seq=int(last_ack or 0),
            last_ack_at=self._get("last_ack_at"),
            last_error=self._get("last_error"),
            last_error_at=self._get("last_error_at"),
            checkpoint=self._get("checkpoint") is not None,
        )

    def is_nearly_full(self) -> bool:
        return self._queued_count() >= WARN_FRACTION * self.max_envelopes
