"""Which events Temporal must hear: a journey starts on their type, or a run that lives (or may
be starting) for their customer listens to it (pure)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from trouw.language.journey.model import Journey

# A date journey (birthday) starts when the customer is first known (triggers.listens_for_start).
DATE_START_TYPES = frozenset({"register", "purchase"})


@dataclass(frozen=True)
class Interest:
    """A set of event types; `everything` when any type may matter."""

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


def _add(into: dict[str, frozenset[str]], kinds: Iterable[str], values: Iterable[str]) -> None:
    added = frozenset(values)
    for kind in kinds:
        into[kind] = into.get(kind, frozenset()) | added


@dataclass(frozen=True)
class Hearing:
    """Who must hear an event, by its type.

    `starts`: types a journey starts on, heard for every customer (`everything` for a trigger
    on `any`, or a live run of a version whose listens are not known). A type that only runs
    listen to (an exit rule, a goal, a `wait_for`) is heard for a customer with a live run of a
    version that listens to it (`by_version`), or with an earlier event not matched yet whose
    type starts a journey whose runs listen to it (`by_start`): its run may be starting."""

    starts: Interest = Interest()
    by_version: Mapping[str, frozenset[str]] = field(default_factory=dict)
    by_start: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @property
    def interest(self) -> Interest:
        """Every type someone may hear (what the API hands off at once)."""
        return self.starts | Interest(frozenset(self.by_version) | frozenset(self.by_start))

    def for_everyone(self, kind: str) -> bool:
        return self.starts.wants(kind)

    @property
    def pending_types(self) -> frozenset[str]:
        """The start types whose unmatched events make a run-only type heard."""
        return frozenset().union(*self.by_start.values())

    def wants(self, kind: str, *, versions: Collection[str], pending: Collection[str]) -> bool:
        """`versions`: those of the customer's live runs; `pending`: the types of the
        customer's earlier events that match_journeys has not answered yet."""
        if self.starts.wants(kind):
            return True
        if self.by_version.get(kind, frozenset()).intersection(versions):
            return True
        return bool(self.by_start.get(kind, frozenset()).intersection(pending))


def hearing(journeys: Iterable[Journey], live: Mapping[str, Iterable[str] | None]) -> Hearing:
    """Who must hear what.

    `journeys`: every version that may start a run now (the catalog, and versions it held a
    moment ago that a worker with an older copy may still start). `live`: for each version with
    a live run (held or running), what its runs listen to; None when not known. The customer
    workflow needs no type of its own: it dedups, routes to listening runs (held or running)
    and asks match_journeys, nothing else per event (docs/decisions.md).
    """
    starts = Interest()
    by_version: dict[str, frozenset[str]] = {}
    by_start: dict[str, frozenset[str]] = {}
    for journey in journeys:
        starting = start_types(journey)
        starts |= starting
        _add(by_start, journey.listens_to(), starting.types)
    for version, listens in live.items():
        if listens is None:
            starts = EVERYTHING
        else:
            _add(by_version, listens, [version])
    return Hearing(starts, by_version, by_start)


def with_other_workers(heard: Hearing, others: Interest) -> Hearing:
    """`heard` widened by what the other workers say their relays hand off (`others`): a type
    only another worker knows (its own folder of journeys, or an older release that names no
    types, which counts as every type) is heard for everyone here too. A type this relay knows
    keeps its own answer, per customer where it is one."""
    if others.everything:
        return Hearing(EVERYTHING, heard.by_version, heard.by_start)
    unknown = others.types - heard.interest.types
    if not unknown:
        return heard
    return Hearing(heard.starts | Interest(unknown), heard.by_version, heard.by_start)
