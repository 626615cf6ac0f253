"""The message ledger read by message key, for the (many) messages that attributions name."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from trouw.domain.db.models import Message

# Keys per IN list: SQLite allows 32,766 bound parameters, and PostgreSQL plans long lists
# slowly; a year's attributed orders are hundreds of thousands of keys.
KEYS_PER_QUERY = 5000


def by_key(
    connection: Connection, keys: Collection[str], *columns: Any, source: Any = None
) -> Iterator[Any]:
    """(message_key, *columns) of each message with one of `keys`, a chunk of keys per query;
    `source`, when given, is what the columns are selected from (the message table joined)."""
    m = Message.__table__  # type: ignore[attr-defined]
    ordered = list(keys)
    for at in range(0, len(ordered), KEYS_PER_QUERY):
        query = sa.select(m.c.message_key, *columns)
        if source is not None:
            query = query.select_from(source)
        yield from connection.execute(
            query.where(m.c.message_key.in_(ordered[at : at + KEYS_PER_QUERY]))
        )
