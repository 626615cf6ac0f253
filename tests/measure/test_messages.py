"""The message ledger read by key: every asked key found once, however many chunks it takes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine

from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import Message
from trouw.domain.measure import messages
from trouw.domain.measure.messages import by_key


def test_keys_over_several_chunks_are_each_found_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(messages, "KEYS_PER_QUERY", 2)
    with session_scope(engine) as session:
        for n in range(5):
            session.add(
                Message(
                    message_key=f"k{n}",
                    customer_id="c1",
                    journey="tips",
                    step=f"s{n}",
                    channel="email",
                    category="service",
                    template="care_tips",
                    created_at=datetime(2026, 3, 2, tzinfo=UTC),
                )
            )
    m = Message.__table__  # type: ignore[attr-defined]
    with engine.connect() as connection:
        found = sorted(by_key(connection, ["k0", "k2", "k3", "k4", "gone"], m.c.step))
    assert [tuple(row) for row in found] == [("k0", "s0"), ("k2", "s2"), ("k3", "s3"), ("k4", "s4")]
