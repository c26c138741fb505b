"""A cursor for the hot, fixed statements of the bid path: prepared once per connection.

Django's PostgreSQL backend binds parameters on the client (psycopg's `ClientCursor`): every
statement arrives as new SQL text that PostgreSQL parses and plans again. For the handful of
statements every bid request makes (key lookup, team lock, book query, insert, round, stored
response) that parsing and planning was most of PostgreSQL's CPU per bid. The cursor here binds on
the server and prepares each statement on its first run on a connection (psycopg keeps up to 100
per connection, keyed by text and parameter types), so from then on PostgreSQL only executes it.
Django turns psycopg's preparation off (for connection poolers in transaction mode, which lose
prepared statements between transactions); Gridx connects directly, so the cursor turns it back
on for its own statements and asks for it on each. Behind such a pooler set
`DATABASE_PREPARED_STATEMENTS=false` (PgBouncer 1.21+ with `max_prepared_statements` handles
them, session mode always does).

The cursor is wrapped by Django as `connection.cursor()` is, so query capture
(`django_assert_num_queries`, `connection.queries`) and execute wrappers still see every statement.
Only fixed SQL texts belong here: a text built per request would be prepared for nothing. Other
databases (the SQLite demo) get Django's ordinary cursor.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections


def _preparing_cursor_class() -> Any:
    from django.db.backends.postgresql.base import ServerBindingCursor

    class PreparingCursor(ServerBindingCursor):
        def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None, **kw: Any) -> Any:
            return super().execute(  # type: ignore[misc]
                query, params, prepare=True if prepare is None else prepare, **kw
            )

    return PreparingCursor


_CLASS: list[Any] = []


def prepared_cursor() -> Any:
    """A cursor whose statements PostgreSQL prepares on their first run on this connection."""
    # The `connection` proxy looks the alias up on every attribute: once here, not per attribute.
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql" or not settings.DATABASE_PREPARED_STATEMENTS:
        return db.cursor()
    db.ensure_connection()
    db.validate_thread_sharing()
    raw = db.connection
    if raw.prepare_threshold is None:
        # Django sets None, which turns preparing off even when asked for; its own cursors bind
        # on the client and never prepare, so only the statements run here are affected.
        raw.prepare_threshold = 5
    if not _CLASS:
        _CLASS.append(_preparing_cursor_class())
    cursor = _CLASS[0](raw)
    return db.make_debug_cursor(cursor) if db.queries_logged else db.make_cursor(cursor)
