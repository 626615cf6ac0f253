"""The shared vocabulary: one outcome per ledger state, and plain data that comes back the same."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import get_args

from trouw.domain.db.models import Message
from trouw.domain.send_ledger import result
from trouw.domain.why import _outcome
from trouw.language.journey.plain import hydrate, jsonable
from trouw.language.vocabulary import FINAL_STATES, STATE_OUTCOMES, MessageState, send_outcome


def test_every_ledger_state_has_one_outcome_and_only_final_states_are_settled() -> None:
    assert set(STATE_OUTCOMES) == set(get_args(MessageState))
    for state in get_args(MessageState):
        assert (send_outcome(state) != "deferred") == (state in FINAL_STATES)


def test_the_run_and_the_explanation_agree_on_every_final_state() -> None:
    for state in FINAL_STATES:
        row = Message(
            message_key="k",
            customer_id="c1",
            journey="j",
            step="s",
            channel="email",
            category="service",
            template="t",
            state=state,
        )
        assert result(row).outcome == _outcome(row) == send_outcome(state)
    # An outcome that stayed unknown and was not resent: a send nobody can count on.
    assert send_outcome("unknown") == "suppressed"


def test_plain_data_travels_and_comes_back() -> None:
    value = {
        "at": datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        "day": date(2026, 3, 2),
        "lines": ({"price": Decimal("12.50"), "qty": 2},),
        "after": timedelta(days=1),
        7: None,
    }
    plain = jsonable(value)
    assert plain == {
        "at": "2026-03-02T09:00:00+00:00",
        "day": "2026-03-02",
        "lines": [{"price": 12.5, "qty": 2}],
        "after": 86400.0,
        "7": None,
    }
    assert jsonable(value, money=str)["lines"][0]["price"] == "12.50"
    back = hydrate(plain)
    assert back["at"] == value["at"] and back["day"] == value["day"]
