"""Which event types Temporal must hear: a journey starts on them or a live run listens (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from trouw.language.journey.model import Journey

# A date journey (birthday) starts when the customer is first known (triggers.listens_for_start).
DATE_START_TYPES = frozenset({"register", "purchase"})


@dataclass(frozen=True)
class Interest:
    """The event types the customer workflow does anything with; `everything` when any type
    may matter (a journey triggered by `any`, or a live run of a version we cannot read)."""

    types: frozenset[str] = frozenset()
    everything: bool = False

    def wants(self, event_type: str) -> bool:
        return self.everything or event_type in self.types

    def __or__(self, other: Interest) -> Interest:
        return Interest(self.types | other.types, self.everything or other.everything)


EVERYTHING = Interest(everything=True)


def start_types(journey: Journey) -> Interest:
    """The event types that can start a run of the journey (before any data is read)."""
    trigger = journey.trigger
    if trigger.event == "any":
        return EVERYTHING
    if trigger.event is not None:
        return Interest(frozenset({trigger.event}))
    return Interest(DATE_START_TYPES)


def interest(journeys: Iterable[Journey], live_listens: Iterable[Iterable[str] | None]) -> Interest:
    """What the customer workflow must hear of.

    `journeys`: every version that may start a run now (the catalog, and versions it held a
    moment ago that a worker with an older copy may still start); their triggers, and what
    their runs listen to (exits, goals, waits), since a run they start may be held or running
    by the time the next event comes. `live_listens`: what each version with a live run (held
    or running) listens to; None for a version whose listens are not known, which makes every
    type matter. The customer workflow itself needs no type of its own: it dedups, routes to
    listening runs (held or running) and asks match_journeys, nothing else per event.
    """
    found = Interest()
    for journey in journeys:
        found |= start_types(journey) | Interest(frozenset(journey.listens_to()))
    for listens in live_listens:
        found |= EVERYTHING if listens is None else Interest(frozenset(listens))
    return found
