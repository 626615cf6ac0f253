"""The words every layer shares: message category and channel, ledger state, and its outcome."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, cast

# From least to most strict: a step may send a template only as strict as it declares, or more.
Category = Literal["transactional", "service", "promotional"]
CATEGORIES: tuple[Category, ...] = ("transactional", "service", "promotional")

Channel = Literal["email", "sms"]
CHANNELS: tuple[Channel, ...] = ("email", "sms")

# A send ledger row's state (trouw/domain/send_ledger.py describes the machine).
MessageState = Literal[
    "claimed", "in_flight", "reconciling", "sent", "suppressed", "failed", "unknown"
]
# A retry or a replay that meets one of these sends nothing.
FINAL_STATES: frozenset[MessageState] = frozenset({"sent", "suppressed", "failed", "unknown"})

# Why no attempt of a send follows, so that its ledger row is ended (SendLedger.give_up): the
# send activity's retries are over, or the run was cancelled while the send went on.
GiveUpKind = Literal["retries_over", "cancelled"]

# What a send came to, as the run that asked for it learns it (SendMessageResult.outcome), as
# the simulator's timeline and `trouw why` show it.
SendOutcome = Literal["sent", "suppressed", "deferred", "failed"]

# The one map from ledger state to outcome. `unknown` is an outcome the provider never settled
# and the category's rule did not resend: not sent as far as anyone can count on, so the run
# goes on as after a suppression, and the row's reason (unknown_outcome_not_resent) says why.
# A row not final is still on its way: deferred (by the policy, a pause, or an attempt).
STATE_OUTCOMES: Mapping[MessageState, SendOutcome] = {
    "claimed": "deferred",
    "in_flight": "deferred",
    "reconciling": "deferred",
    "sent": "sent",
    "suppressed": "suppressed",
    "failed": "failed",
    "unknown": "suppressed",
}


def send_outcome(state: str) -> SendOutcome:
    """The outcome of a ledger row in this state (a state unknown to this code: deferred)."""
    return STATE_OUTCOMES.get(cast(MessageState, state), "deferred")


def stricter(category: Category, other: str | None) -> Category:
    """The stricter of two categories; `other` may be a template's undeclared (None) one."""
    for known in CATEGORIES:
        if other == known and CATEGORIES.index(known) > CATEGORIES.index(category):
            return known
    return category
