"""`trouw simulate`: the real workflows and activities on the time-skipping server, per scenario."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from sqlmodel import col, select

from trouw.domain.db.engine import make_engine, new_sqlite_database, session_scope
from trouw.domain.db.models import InboundEvent, JourneyRunEvent, Message
from trouw.domain.ingest import (
    CustomerIn,
    EventFacts,
    EventId,
    EventIn,
    ProductIn,
    TimeZone,
    ingest_event,
    redeem_order_vouchers,
    upsert_customer,
    upsert_product,
    wire_event,
)
from trouw.domain.loyalty.ledger import derived_from, take_derived
from trouw.domain.loyalty.sweep import next_due, sweep
from trouw.domain.measure.scripted import (
    ALSO_ENGAGEMENT,
    ENGAGEMENT_ONLY,
    deliver_sent,
    record_scripted,
)
from trouw.language.journey.durations import DurationError, parse_duration
from trouw.language.journey.interest import EVERYTHING
from trouw.language.journey.loader import (
    JourneyError,
    LoadedJourney,
    Problem,
    parse_model,
    read_document,
)
from trouw.language.locales import LocaleTag
from trouw.language.vocabulary import Channel, send_outcome
from trouw.settings import Settings

if TYPE_CHECKING:
    from trouw.stack.relay import Listeners


class ScenarioModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScenarioCustomer(CustomerIn):
    """A scenario's customer: the API's profile, with the defaults a simulation runs on."""

    locale: LocaleTag = "nl-BE"  # before phone: a national number is read in its region
    timezone: TimeZone = "Europe/Brussels"
    opt_in: dict[Channel, bool] = Field(default_factory=dict)


class ScenarioEvent(EventFacts):
    """A scenario's event: what the API's events say, at an offset from the start or a time."""

    at: str | datetime
    # Ingest's event types, checked when the event is taken in (trouw.domain.checks.scenario_check),
    # and the engagement the simulation scripts itself (open, click, complaint).
    type: str
    id: EventId | None = None
    # Engagement (open, click, complaint; bounce and unsubscribe too): the message it is about,
    # the customer's latest sent one narrowed by journey and step (trouw.domain.measure.scripted).
    journey: str | None = None
    step: str | None = None

    @model_validator(mode="after")
    def _engagement_fields(self) -> ScenarioEvent:
        from trouw.domain.measure.scripted import ALSO_ENGAGEMENT, ENGAGEMENT_ONLY

        about_a_message = self.type in ENGAGEMENT_ONLY or self.type in ALSO_ENGAGEMENT
        if (self.journey or self.step) and not about_a_message:
            raise ValueError(
                f"journey and step name the message an {', '.join(ENGAGEMENT_ONLY)}, bounce or "
                f"unsubscribe is about; a {self.type} event has none"
            )
        if self.session_id and self.type not in ("click", "purchase"):
            raise ValueError("session_id belongs on a click and on the purchase it led to")
        return self

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, value: Any) -> Any:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("a timestamp needs its offset, e.g. 2026-03-02T09:00:00+01:00")
            return value
        text = str(value)
        try:
            parse_duration(text)
        except DurationError:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"{text!r} is neither an offset (2d4h) nor a timestamp") from None
            if parsed.tzinfo is None:
                raise ValueError(
                    "a timestamp needs its offset, e.g. 2026-03-02T09:00:00+01:00"
                ) from None
            return parsed
        return text


class ScenarioInsight(ScenarioModel):
    """Insight refreshes during the simulation, as the nightly schedule would run them."""

    every: str = "7d"
    at: str = "02:30"  # local time, in the zone of `start`

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, value: Any) -> str:
        parse_duration(value)
        return str(value)

    @field_validator("at")
    @classmethod
    def _at(cls, value: str) -> str:
        hour, _, minute = value.partition(":")
        if not (hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60):
            raise ValueError(f"bad time of day {value!r}: write it as HH:MM, like 02:30")
        return value


class Scenario(ScenarioModel):
    start: datetime
    until: str = "400d"
    customers: list[ScenarioCustomer] = Field(min_length=1)
    products: list[ProductIn] = Field(default_factory=list)
    events: list[ScenarioEvent] = Field(default_factory=list)
    # Without it no refresh runs, and insight.* stays empty (None) for every customer.
    insight: ScenarioInsight | None = None

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("start needs its offset, e.g. 2026-03-02T09:00:00+01:00")
        return value

    @field_validator("until", mode="before")
    @classmethod
    def _until(cls, value: Any) -> str:
        parse_duration(value)
        return str(value)

    def moment(self, event: ScenarioEvent) -> datetime:
        if isinstance(event.at, datetime):
            return event.at
        return self.start + parse_duration(event.at)

    @property
    def end(self) -> datetime:
        return self.start + parse_duration(self.until)

    def refreshes(self) -> list[datetime]:
        """When insight refreshes run: daily at `insight.at` from the start, every `every`."""
        if self.insight is None:
            return []
        hour, minute = (int(part) for part in self.insight.at.split(":"))
        first = self.start.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if first <= self.start:
            first += timedelta(days=1)
        step = parse_duration(self.insight.every)
        moments = []
        while first <= self.end:
            moments.append(first)
            first += step
        return moments


def load_scenario(path: Path) -> Scenario:
    """The scenario, or a JourneyError with every problem of the file (file:line:col)."""
    from trouw.domain.checks.scenario_check import scenario_problems

    doc = read_document(path)
    problems = scenario_problems(doc)
    if problems:
        raise JourneyError(problems)
    return parse_model(doc, Scenario)


def event_in(scenario: Scenario, event: ScenarioEvent, index: int) -> EventIn:
    data = event.model_dump(exclude={"at", "id", "journey", "step"}, exclude_none=True)
    data["lines"] = [line.model_dump(exclude_none=True) for line in event.lines]
    return EventIn(
        id=event.id or f"sim-{index + 1}", at=scenario.moment(event), source="simulation", **data
    )


@dataclass(frozen=True)
class TimelineEntry:
    """One message decision (the contract's record), with the deferral it went through.

    `at` is to the minute, like a run outcome's: the time-skipping server's clock runs on in
    real time while the worker handles a task, so a send falls a second or two after its
    minute when the machine is busy (and differs between a run in one process and in two).
    """

    at: str
    customer: str
    journey: str
    step: str
    channel: str
    template: str
    category: str
    outcome: str
    reason: str | None
    subject: str | None
    message_key: str
    file: str | None = None
    day: int = 0  # calendar days since the start, in the customer's time zone
    deferred: dict[str, str | None] | None = None  # the first deferral: at, reason, text
    moment: str = ""  # the exact time (not printed): orders it among its run's outcomes


@dataclass(frozen=True)
class RunEntry:
    """One run outcome, as the workflow and match_journeys recorded it (journey_run_event).

    `at` is to the minute: an outcome that follows an activity (a branch after a send) is
    recorded when the activity is done, which on the time-skipping server is a fraction of a
    real second later, and journeys do not work below the minute.
    """

    at: str
    customer: str
    journey: str
    step: str | None
    outcome: str  # a trouw.language.contracts.RunEventKind
    reason: str | None
    workflow_id: str | None
    expression: str | None = None
    location: str | None = None  # file:line:col of the expression or step, when known
    day: int = 0
    seq: int = 0  # recording order (not printed)
    moment: str = ""  # the exact time (not printed)


@dataclass
class SimulationResult:
    timeline: list[TimelineEntry]
    outbox_dir: Path
    seconds: float
    workdir: Path
    outbox_dirs: list[Path] = field(default_factory=list)
    runs: list[RunEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # scripted engagement that found no message
    # The measurement report over the simulated period (trouw.commands.simulate.measurement).
    report: dict[str, Any] | None = None

    @property
    def failures(self) -> list[RunEntry]:
        return [run for run in self.runs if run.outcome == "failed"]


Progress = Callable[[int, int, str], None]


def default_parallelism(customers: int) -> int:
    """Processes to use: customers are independent, so big scenarios use every core."""
    if customers < 8:
        return 1
    return max(1, min(os.cpu_count() or 1, 4, customers // 4))


def check_journeys(journeys_dir: Path, templates_dir: Path) -> dict[str, LoadedJourney]:
    """The journeys as `trouw validate` checks them: a file the worker would refuse stops the
    simulation before anything runs (all problems at once), instead of silently starting no runs."""
    loaded, problems = _validated(journeys_dir, templates_dir)
    if problems:
        raise JourneyError(problems)
    return {item.journey.name: item for item in loaded}


# validate_paths' answers, by the folders' files as they were (see _validated).
_checked: dict[tuple[Any, ...], tuple[list[LoadedJourney], list[Problem]]] = {}


def _validated(
    journeys_dir: Path, templates_dir: Path
) -> tuple[list[LoadedJourney], list[Problem]]:
    """What `trouw validate` finds in the journeys folder, checked once per process while no
    file of either folder changes: the command checks before it forks its parts, then each part
    as it starts and its worker's journey catalog (0.2-0.5 CPU s each time after the first,
    which compiles the templates); a forked part inherits the answer."""
    from activities.custom import CUSTOM_ACTIVITY_NAMES
    from trouw.domain.checks.validate import validate_paths
    from trouw.language.attributes import declared_attributes

    # The attributes the simulation's own settings declare (config/trouw.toml).
    attributes = declared_attributes(Settings())
    key = (_files_stamp(journeys_dir), _files_stamp(templates_dir), repr(attributes))
    if key not in _checked:
        _checked[key] = validate_paths(
            [journeys_dir],
            templates_dir=templates_dir,
            activities=CUSTOM_ACTIVITY_NAMES,
            attributes=attributes,
        )
    return _checked[key]


def _files_stamp(folder: Path) -> tuple[Any, ...]:
    """Every file under the folder with its size and modification time."""
    stamps = []
    for path in sorted(folder.rglob("*")):
        with contextlib.suppress(OSError):  # gone meanwhile: the stamp differs anyway
            stat = path.stat()
            stamps.append((str(path), stat.st_size, stat.st_mtime_ns))
    return (str(folder.resolve()), tuple(stamps))


async def simulate_parallel(
    scenario: Scenario,
    *,
    journeys_dir: Path,
    templates_dir: Path,
    workdir: Path | None = None,
    processes: int | None = None,
    progress: Progress | None = None,
) -> SimulationResult:
    """Split the customers over processes (each with its own time-skipping server) and merge."""
    from trouw.stack.temporal import quiet_runtime

    count = processes or default_parallelism(len(scenario.customers))
    if count <= 1:
        quiet_runtime()
        return await simulate(
            scenario,
            journeys_dir=journeys_dir,
            templates_dir=templates_dir,
            workdir=workdir,
            progress=progress,
        )
    loop = asyncio.get_running_loop()
    started = loop.time()
    if _can_fork():
        return await _simulate_forked(
            scenario,
            journeys_dir=journeys_dir,
            templates_dir=templates_dir,
            workdir=workdir,
            count=count,
            progress=progress,
            started=started,
        )
    quiet_runtime()
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    # This process simulates the first part itself: a process of its own would repeat the
    # imports and the journey check this one has done (seconds of CPU on a 2-core machine).
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=count - 1,
        mp_context=context,
        initializer=_warm_part,
        initargs=(str(journeys_dir), str(templates_dir)),
    )
    # The other parts start now (one process each; their imports and checks take seconds) while
    # this process checks the journeys: a refusal still stops everything before a customer runs.
    for _ in range(count - 1):
        pool.submit(os.getpid)
    try:
        check_journeys(journeys_dir, templates_dir)
    except BaseException:
        # Wait for the parts to finish starting: left behind, they would outlive this process.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    home = workdir or Path(tempfile.mkdtemp(prefix="trouw-sim-"))
    parts, payload = _split(scenario, count)
    with pool:
        futures = [
            loop.run_in_executor(
                pool,
                _simulate_part,
                payload,
                part,
                str(journeys_dir),
                str(templates_dir),
                str(home / f"part-{number}"),
            )
            for number, part in enumerate(parts)
            if number > 0
        ]
        here = asyncio.ensure_future(
            _simulate_part_here(
                payload, parts[0], str(journeys_dir), str(templates_dir), str(home / "part-0")
            )
        )
        try:
            merged_parts = await _gather_parts([here, *futures], parts, progress)
        except BaseException:
            here.cancel()
            raise
    return _merged_result(scenario, home, count, merged_parts, started)


def _split(scenario: Scenario, count: int) -> tuple[list[list[str]], dict[str, Any]]:
    """The customer ids of each part, and the scenario as plain data for the parts."""
    ids = [customer.id for customer in scenario.customers]
    parts = [ids[n::count] for n in range(count)]
    payload = scenario.model_dump(mode="json")
    for index, event in enumerate(payload["events"]):
        # an event keeps the id it has in the whole scenario, whichever part simulates it
        event["id"] = event.get("id") or f"sim-{index + 1}"
    return parts, payload


_Parts = tuple[list["TimelineEntry"], list["RunEntry"], list[Path], list[str]]


async def _gather_parts(
    works: list[Awaitable[PartResult]], parts: list[list[str]], progress: Progress | None
) -> _Parts:
    """Every part's timeline, runs, outbox and notes, progress told as each part ends."""
    timeline: list[TimelineEntry] = []
    runs: list[RunEntry] = []
    outboxes: list[Path] = []
    notes: list[str] = []
    total = sum(len(part) for part in parts)
    async for finished, result in _as_finished(works, parts):
        entries, run_entries, outbox, part_notes = result
        notes.extend(part_notes)
        timeline.extend(TimelineEntry(**entry) for entry in entries)
        runs.extend(RunEntry(**entry) for entry in run_entries)
        outboxes.append(Path(outbox))
        if progress:
            progress(finished, total, "")
    return timeline, runs, outboxes, notes


def _merged_result(
    scenario: Scenario, home: Path, count: int, gathered: _Parts, started: float
) -> SimulationResult:
    """The parts' results as one: timelines merged in time order, databases merged, measured."""
    timeline, runs, outboxes, notes = gathered
    outboxes.sort(key=lambda path: path.parent.name)  # part-0 first, whichever ended first
    timeline.sort(key=lambda e: (datetime.fromisoformat(e.at), e.customer, e.message_key))
    runs.sort(key=_run_order)
    merged = merge_databases(
        [home / f"part-{number}" / "simulation.db" for number in range(count)],
        home / "simulation.db",
    )
    measured = measurement(merged, scenario, Settings())
    merged.dispose()
    return SimulationResult(
        timeline,
        outboxes[0],
        asyncio.get_running_loop().time() - started,
        home,
        outboxes,
        runs,
        notes=sorted(notes),
        report=measured,
    )


def _can_fork() -> bool:
    """Whether the parts can be forked from this process: on Linux (macOS forbids much in a
    forked child of a process that used system frameworks), and only while this process runs
    no thread but this one, native ones included (a fork copies only the calling thread: what
    another thread held stays held in the child). A part forked after the Temporal runtime had
    started its threads crashed (SIGSEGV, 2 of 5 runs with 3 parts): `trouw simulate` starts
    the runtime only after the fork (trouw.commands.cli.main), each part its own."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


async def _simulate_forked(
    scenario: Scenario,
    *,
    journeys_dir: Path,
    templates_dir: Path,
    workdir: Path | None,
    count: int,
    progress: Progress | None,
    started: float,
) -> SimulationResult:
    """The parts forked from this process once it has checked the journeys: they start with
    its imports and compiled templates (a spawned part repeats both, about 3 CPU seconds each
    on top of its customers). This process simulates the first part itself."""
    import multiprocessing

    check_journeys(journeys_dir, templates_dir)  # a refusal stops everything before a fork
    _compile_emails(templates_dir, {customer.locale for customer in scenario.customers})
    home = workdir or Path(tempfile.mkdtemp(prefix="trouw-sim-"))
    parts, payload = _split(scenario, count)
    context = multiprocessing.get_context("fork")
    forked = []
    for number, part in enumerate(parts):
        if number == 0:
            continue
        receiving, sending = context.Pipe(duplex=False)
        process = context.Process(
            target=_run_forked_part,
            args=(
                sending,
                payload,
                part,
                str(journeys_dir),
                str(templates_dir),
                str(home / f"part-{number}"),
            ),
            name=f"trouw-simulate-part-{number}",
            daemon=True,  # never outlives this process
        )
        process.start()
        sending.close()
        forked.append((process, receiving))
    from trouw.stack.temporal import quiet_runtime

    quiet_runtime()  # this process's runtime, now that the parts are forked
    try:
        here = _simulate_part_here(
            payload, parts[0], str(journeys_dir), str(templates_dir), str(home / "part-0")
        )
        works: list[Awaitable[PartResult]] = [
            here,
            *(
                asyncio.to_thread(_forked_result, process, receiving)
                for process, receiving in forked
            ),
        ]
        gathered = await _gather_parts(works, parts, progress)
    except BaseException:
        await asyncio.to_thread(_stop_parts, [process for process, _ in forked])
        raise
    finally:
        for process, receiving in forked:
            process.join()
            receiving.close()
    return _merged_result(scenario, home, count, gathered, started)


def _compile_emails(templates_dir: Path, locales: set[str]) -> None:
    """Every email template compiled (MJML to HTML) in the scenario's locales, before the parts
    are forked: the compiled HTML is cached per process, so each part compiled again what it
    sent (about 0.9 CPU s for the 17 shipped templates in 4 locales), now once for them all."""
    from trouw.domain.render import TemplateStore

    store = TemplateStore(templates_dir, locale_fallback=Settings().locale_fallback)
    for name in store.names():
        if "email" not in store.channels(name):
            continue
        for locale in sorted(locales):
            # A template that does not compile fails where it is sent, as it would have.
            with contextlib.suppress(Exception):
                store.compiled_html(name, locale)


def _stop_parts(processes: list[Any], *, grace: float = 30.0) -> None:
    """Stop the parts still running after another failed: interrupted, as Ctrl-C would, so that
    each stops its worker and its time-skipping server; killed if one has not ended by then."""
    import signal
    import time

    for process in processes:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGINT)
    deadline = time.monotonic() + grace
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()


def _run_forked_part(
    sending: Any,
    payload: dict[str, Any],
    customer_ids: list[str],
    journeys: str,
    templates: str,
    workdir: str,
) -> None:
    """A forked part: its own Temporal runtime and event loop, its result (or its error, with
    the traceback) sent back through the pipe."""
    import pickle
    import signal
    import traceback

    from trouw.stack.temporal import quiet_runtime

    quiet_runtime()
    # The parent's event loop set its own Ctrl-C handler: this part's loop sets its own (an
    # interrupt cancels the part, which then stops its worker and test server).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = asyncio.run(
            _simulate_part_here(payload, customer_ids, journeys, templates, workdir)
        )
        sending.send(("done", result, None))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        text = traceback.format_exc()
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # noqa: BLE001 - an exception that does not travel: its text does
            sending.send(("failed", None, text))
        else:
            sending.send(("failed", exc, text))
    finally:
        sending.close()


def _forked_result(process: Any, receiving: Any) -> PartResult:
    """A forked part's result (in a thread: it waits); its exception raised here."""
    try:
        status, value, text = receiving.recv()
    except EOFError:
        process.join()
        raise RuntimeError(
            f"simulation part {process.name} ended without a result (exit code {process.exitcode})"
        ) from None
    if status == "done":
        result: PartResult = value
        return result
    failure = RuntimeError(f"simulation part {process.name} failed:\n{text}")
    if not isinstance(value, Exception):  # not picklable, or interrupted (_stop_parts)
        raise failure
    raise value from failure


def merge_databases(parts: list[Path], target: Path) -> Any:
    """One database holding every part's rows (customers are disjoint between parts); rows
    every part holds alike (the shop's history, loaded into each part for insight) are kept once
    by their unique keys. Returns the engine of the merged database."""
    import sqlalchemy as sa
    from sqlmodel import SQLModel

    from trouw.domain.db.models import ROLLUP_TABLES

    merged = new_sqlite_database(target)
    for part in parts:
        source = make_engine(f"sqlite:///{part}")
        present = set(sa.inspect(source).get_table_names())  # before a transaction holds it
        with source.connect() as reading, merged.begin() as writing:
            for table in SQLModel.metadata.sorted_tables:
                # The roll-ups follow from the ledger rows copied (their triggers fire here).
                if table.name not in present or table.name in ROLLUP_TABLES:
                    continue
                # An integer id is the part's own counter: the merged database numbers anew.
                generated = [
                    c.name
                    for c in table.primary_key.columns
                    if c.autoincrement is True
                    or (c.name == "id" and isinstance(c.type, sa.Integer))
                ]
                columns = [c for c in table.columns if c.name not in generated]
                rows = [
                    dict(zip((c.name for c in columns), row, strict=True))
                    for row in reading.execute(sa.select(*columns))
                ]
                if rows:
                    writing.execute(table.insert().prefix_with("OR IGNORE"), rows)
        source.dispose()
    return merged


def _warm_part(journeys: str, templates: str) -> None:
    """A part's process, as it starts: the imports and the journey check a part needs (what the
    check compiles stays cached in the process), while the parent still checks."""
    from trouw.stack.temporal import quiet_runtime
    from trouw.stack.worker import build_worker  # noqa: F401 - imported for its import time

    quiet_runtime()
    with contextlib.suppress(JourneyError):  # the parent reports it, with every problem
        check_journeys(Path(journeys), Path(templates))


PartResult = tuple[list[dict[str, Any]], list[dict[str, Any]], str, list[str]]


async def _as_finished(
    works: list[Awaitable[PartResult]], parts: list[list[str]]
) -> AsyncIterator[tuple[int, PartResult]]:
    """Each part's result as it finishes, with the customers of the parts finished so far
    (`works[n]` simulates `parts[n]`; they finish in any order)."""

    async def sized(size: int, work: Awaitable[PartResult]) -> tuple[int, PartResult]:
        return size, await work

    finished = 0
    for next_one in asyncio.as_completed(
        [sized(len(part), work) for work, part in zip(works, parts, strict=True)]
    ):
        size, result = await next_one
        finished += size
        yield finished, result


def _simulate_part(
    payload: dict[str, Any], customer_ids: list[str], journeys: str, templates: str, workdir: str
) -> PartResult:
    """One process's share of a parallel simulation (a top-level function, so it can be spawned)."""
    return asyncio.run(_simulate_part_here(payload, customer_ids, journeys, templates, workdir))


async def _simulate_part_here(
    payload: dict[str, Any], customer_ids: list[str], journeys: str, templates: str, workdir: str
) -> PartResult:
    """One share of a parallel simulation, in this process: the part's customers and events from
    the whole scenario's payload (every purchase too, for insight), as plain data back."""
    wanted = set(customer_ids)
    part = dict(payload)
    part["customers"] = [c for c in payload["customers"] if c["id"] in wanted]
    part["events"] = [e for e in payload["events"] if e["customer"] in wanted]
    scenario = Scenario.model_validate(part)
    purchases = [
        ScenarioEvent.model_validate(e) for e in payload["events"] if e["type"] == "purchase"
    ]
    result = await simulate(
        scenario,
        journeys_dir=Path(journeys),
        templates_dir=Path(templates),
        workdir=Path(workdir),
        shop_purchases=purchases,
        with_report=False,  # the parts' databases are merged and measured together
    )
    return (
        [asdict(entry) for entry in result.timeline],
        [asdict(entry) for entry in result.runs],
        str(result.outbox_dir),
        result.notes,
    )


async def simulate(
    scenario: Scenario,
    *,
    journeys_dir: Path,
    templates_dir: Path,
    workdir: Path | None = None,
    progress: Progress | None = None,
    histories: dict[str, Any] | None = None,
    search_attributes: bool = False,
    sandboxed: bool = False,
    run_histories: dict[str, list[Any]] | None = None,
    shop_purchases: list[ScenarioEvent] | None = None,
    with_report: bool = True,
) -> SimulationResult:
    """Run each customer's scenario on one time-skipping server, one customer after another.

    Customers are independent, so running them one at a time loses nothing and avoids the
    time-skipping server's trouble with many unrelated workflows at once.
    """
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from activities.services import Services
    from trouw.domain.publish import FolderContent
    from trouw.stack.relay import Listeners
    from trouw.stack.temporal import binary, deliver
    from trouw.stack.worker import build_worker

    catalog = check_journeys(journeys_dir, templates_dir)
    loop = asyncio.get_running_loop()
    started = loop.time()
    home = workdir or Path(tempfile.mkdtemp(prefix="trouw-sim-"))
    home.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        home=home,
        database_url=f"sqlite:///{home / 'simulation.db'}",
        journeys_dir=journeys_dir,
        templates_dir=templates_dir,
        email_provider="outbox",
        sms_provider="outbox",
        signing_keys=["simulation-only-key"],
        task_queue="trouw-simulation",
        # Readable codes (WELKOM-C1-1, REF-C1): a scenario can redeem what a journey issues.
        voucher_codes="scenario",
    )
    engine = new_sqlite_database(home / "simulation.db")
    # The worker's journey catalog takes the check made above instead of making it again.
    services = Services.from_settings(
        settings,
        engine=engine,
        content=FolderContent(
            settings, check=lambda _files: _validated(journeys_dir, templates_dir)
        ),
    )
    from trouw.providers.outbox import OutboxProvider

    outbox = OutboxProvider(
        settings.outbox_dir,
        email_from=settings.email_from,
        reply_to=settings.email_reply_to,
        eml=False,  # the simulation's page opens each email's .html; nobody reads an .eml
    )
    for channel in ("email", "sms"):
        services.use_provider(channel, outbox)
    with session_scope(engine) as session:
        for product in scenario.products:
            upsert_product(session, product)
        for customer in scenario.customers:
            upsert_customer(
                session,
                customer,
                at=scenario.start,
                source="import",
                wording_version="simulation",
            )
    if scenario.insight is not None:
        _load_shop_history(engine, scenario, shop_purchases)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )
    # The simulator reports each failure itself, once (failure_lines); the worker's ERROR log
    # of a failing trigger would repeat it for every customer, and so would the customer
    # workflow's warning for each run that failed inside it (workflows/inline.py).
    quiet = {"trouw.journeys": logging.CRITICAL, "temporalio.workflow": logging.ERROR}
    levels = {name: logging.getLogger(name).level for name in quiet}
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)
    try:
        worker = build_worker(
            env.client,
            services,
            task_queue=settings.task_queue,
            sandboxed=sandboxed,
            fail_runs_on_errors=True,
            build_id="trouw-simulation",  # not the SDK's hash of every module's code
        )
        unrecorded: list[RunEntry] = []
        notes: list[str] = []
        async with worker:
            total = len(scenario.customers)
            for number, customer in enumerate(scenario.customers, start=1):
                if progress:
                    progress(number - 1, total, customer.id)
                await _simulate_customer(
                    env,
                    scenario,
                    customer.id,
                    settings,
                    engine,
                    deliver,
                    histories,
                    search_attributes,
                    unrecorded,
                    run_histories,
                    notes,
                    Listeners(engine, services.content),
                )
            if progress:
                progress(total, total, "")
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        await env.shutdown()
    _finish_refreshes(engine, scenario)
    with session_scope(engine) as session:
        deliver_sent(session, until=scenario.end)
    timeline = collect_timeline(engine, scenario, settings.outbox_dir)
    runs = collect_runs(engine, scenario, catalog) + unrecorded
    runs.sort(key=_run_order)
    measured = measurement(engine, scenario, settings) if with_report else None
    engine.dispose()
    return SimulationResult(
        timeline,
        settings.outbox_dir,
        loop.time() - started,
        home,
        runs=runs,
        notes=notes,
        report=measured,
    )


def measurement(engine: Any, scenario: Scenario, settings: Settings) -> dict[str, Any]:
    """The measurement report over the simulated period, as `trouw report --format json` gives
    it, with the uplift of every split the customers reached (`uplifts`, for the page)."""
    from trouw.domain.measure.report import attribution_rules, journey_report
    from trouw.domain.measure.splits import split_steps, uplift_report

    start, end = scenario.start, scenario.end
    with engine.connect() as connection:
        body = journey_report(
            connection, attribution_rules(settings), start=start, end=end, segments=True
        )
    with session_scope(engine) as session:
        uplifts = [
            uplift_report(session, journey=j, step=st, start=start, end=end).to_json()
            for j, st in split_steps(session, start=start, end=end)
        ]
    return {"report": body.to_json(), "uplifts": uplifts}


def _script_engagement(
    engine: Any,
    scenario: Scenario,
    event: ScenarioEvent,
    index: int,
    moment: datetime,
    notes: list[str] | None,
) -> None:
    """The engagement a scenario event scripts, on the message it is about; a note when the
    customer had no such message by then (an open of nothing records nothing)."""
    with session_scope(engine) as session:
        found = record_scripted(
            session,
            event_type=event.type,
            event_id=event.id or f"sim-{index + 1}",
            customer_id=event.customer,
            at=moment,
            journey=event.journey,
            step=event.step,
            channel=event.channel if event.type != "unsubscribe" else None,
            session_id=event.session_id,
        )
    if found is None and notes is not None:
        about = " ".join(
            part
            for part in (
                f"journey {event.journey}" if event.journey else "",
                f"step {event.step}" if event.step else "",
            )
            if part
        )
        notes.append(
            f"events #{index + 1}: {event.type} at {moment.isoformat()}: customer "
            f"{event.customer} had no message sent by then{' (' + about + ')' if about else ''}"
            ": nothing recorded"
        )


async def _simulate_customer(
    env: Any,
    scenario: Scenario,
    customer_id: str,
    settings: Settings,
    engine: Any,
    deliver: Any,
    histories: dict[str, Any] | None,
    search_attributes: bool,
    unrecorded: list[RunEntry],
    run_histories: dict[str, list[Any]] | None = None,
    notes: list[str] | None = None,
    listeners: Listeners | None = None,
) -> None:
    base = await env.get_current_time()
    offset = (scenario.start - base).total_seconds()
    shift = timedelta(seconds=offset)
    indexed = [
        (scenario.moment(event), index, event)
        for index, event in enumerate(scenario.events)
        if event.customer == customer_id
    ]

    # A referral rewards the referrer too: their workflow wakes within this customer's time.
    others: set[str] = set()

    async def hand_over(rows: list[Any]) -> None:
        # An event of a type no journey starts on and no live run listens to is not
        # signalled (the relay also judges per customer: trouw.stack.relay.Listeners).
        wanted = listeners().interest if listeners is not None and rows else EVERYTHING
        for wire in rows:
            if wire.customer_id != customer_id:
                others.add(wire.customer_id)
            if not wanted.wants(wire.type):
                continue
            await deliver(
                env.client,
                wire,
                task_queue=settings.task_queue,
                search_attributes=search_attributes,
                clock_offset_seconds=offset,
            )

    async def sweep_until(limit: datetime) -> None:
        # What becomes due with time alone (expiring points and vouchers), at its moment, for
        # this customer and the others it reached (a referrer's reward voucher). A run that
        # wakes before then may issue a voucher (a win-back after its wait) whose expiry is due
        # before the limit too: stop at each wake-up and look again.
        now = await env.get_current_time() + shift
        if now + _WAKE_SETTLE < limit:
            # What was just handed over (or woke) runs before the clock moves on: the runs
            # reach their waits, and a voucher they issue is in the ledger, before we look.
            await _advance(env, now + _WAKE_SETTLE - shift)
        while True:
            now = await env.get_current_time() + shift
            # The query first: the worker answers it once the workflow task in hand is done,
            # local activities included (a run inside the customer workflow issues its voucher
            # in one), so what that task wrote is in the ledger when the dues are read.
            wake = await _next_wake(
                env, customer_id, _issuing_journeys(settings.journeys_dir), after=now
            )
            swept = [customer_id, *sorted(others)]
            with session_scope(engine) as session:
                dues = [
                    (moment, who)
                    for who in swept
                    if (
                        moment := next_due(
                            session, who, after=now, expiring_days=settings.voucher_expiring_days
                        )
                    )
                    is not None
                ]
            due = min((moment for moment, _who in dues), default=None)
            if wake is not None and wake < min(limit, due or limit):
                await _advance(env, wake + _WAKE_SETTLE - shift)
                continue
            if due is None or due > limit:
                return
            await _advance(env, due - shift)
            with session_scope(engine) as session:
                sweep(
                    session,
                    now=due,
                    expiring_days=settings.voucher_expiring_days,
                    customer_ids=sorted({who for moment, who in dues if moment == due}),
                )
                derived = [wire_event(row) for row in take_derived(session)]
            await hand_over(derived)

    steps: list[tuple[datetime, int, ScenarioEvent | None]] = [
        *indexed,
        *((moment, -1, None) for moment in scenario.refreshes()),
    ]
    for moment, index, event in sorted(steps, key=lambda item: (item[0], item[1])):
        await sweep_until(moment)
        await _advance(env, moment - shift)
        if event is None:
            wires = _refresh_insight(engine, settings, customer_id, moment)
        elif event.type in ENGAGEMENT_ONLY:
            # Engagement reaches no workflow: it is the ledger's, for the report.
            _script_engagement(engine, scenario, event, index, moment, notes)
            continue
        else:
            with session_scope(engine) as session:
                row, new = ingest_event(session, event_in(scenario, event, index), now=moment)
                if not new and event.type == "purchase" and event.vouchers:
                    _redeem_now(session, row, event, moment)
                # The event first, then what Trouw derived from it (points_changed, ...); a
                # purchase stored up front for insight derived its events then.
                derived = take_derived(session) if new else derived_from(session, row.source_id)
                wires = [wire_event(row), *(wire_event(each) for each in derived)]
            if event.type in ALSO_ENGAGEMENT:
                _script_engagement(engine, scenario, event, index, moment, None)
        await hand_over(wires)
    await sweep_until(scenario.end)
    await _advance(env, scenario.end - shift)
    zone = ZoneInfo(next(c.timezone for c in scenario.customers if c.id == customer_id))
    unrecorded.extend(await _unrecorded_outcomes(env, customer_id, shift, scenario.start, zone))
    await _stop_customer(env, engine, customer_id, histories, run_histories)
    for other in sorted(others):
        await _stop_customer(env, engine, other, None, None)


def _load_shop_history(
    engine: Any, scenario: Scenario, purchases: list[ScenarioEvent] | None
) -> None:
    """Every purchase of the shop stored up front (never handed to Temporal from here), so each
    refresh scores the whole shop as of its moment, as the nightly refresh would; history and
    facts read only the orders placed by then. In a parallel run each part gets all of them.

    Voucher codes are left out here: a journey issues them during the simulation, so the
    purchase redeems them at its moment (_redeem_now)."""
    # A part's purchases carry the id they have in the whole scenario (simulate_parallel); the
    # whole scenario's are numbered by their place in it, as the customer's run numbers them.
    shop = purchases if purchases is not None else scenario.events
    with session_scope(engine) as session:
        for index, event in enumerate(shop):
            if event.type == "purchase":
                up_front = event.model_copy(update={"vouchers": []})
                incoming = event_in(scenario, up_front, index)
                ingest_event(session, incoming, now=scenario.moment(event))


def _redeem_now(session: Any, row: InboundEvent, event: ScenarioEvent, moment: datetime) -> None:
    """Redeem a stored-up-front purchase's voucher codes at its moment, as ingest would have,
    and tell its journeys which took (the event's `vouchers`)."""
    from trouw.domain.db.models import Order

    order = session.get(Order, event.order)
    if order is None:
        return
    data = dict(row.payload.get("data") or {})
    redeem_order_vouchers(session, order, event.vouchers, data, at=moment, now=moment)
    row.payload = {**row.payload, "data": data}
    session.add(row)


def _refresh_id(moment: datetime) -> str:
    return f"simulation-{moment.astimezone(UTC):%Y%m%dT%H%M}"


def _refresh_insight(
    engine: Any, settings: Settings, customer_id: str, moment: datetime
) -> list[Any]:
    """The refresh at `moment`, for this customer: the shop is scored once per moment (the first
    customer to get there stages it), this customer's chunk is applied, and the events it emits
    (segment_entered, next_order_expected) are returned to be delivered like any other."""
    from trouw.domain.insight.store import apply_chunk, refresh_staged, score_and_stage

    refresh_id = _refresh_id(moment)
    if not refresh_staged(engine, refresh_id):
        score_and_stage(
            engine, settings, refresh_id=refresh_id, as_of=moment, horizon_days=None, now=moment
        )
    apply_chunk(
        engine,
        refresh_id=refresh_id,
        first=customer_id,
        last=customer_id,
        now=moment,
        next_order_shift=timedelta(days=settings.insight_next_order_shift_days),
    )
    with session_scope(engine) as session:
        rows = session.exec(
            select(InboundEvent)
            .where(
                col(InboundEvent.source_id).like(f"insight:{refresh_id}:%"),
                InboundEvent.customer_id == customer_id,
            )
            .order_by(col(InboundEvent.id))
        ).all()
        return [wire_event(row) for row in rows]


def _finish_refreshes(engine: Any, scenario: Scenario) -> None:
    from trouw.domain.insight.store import finish_refresh, refresh_staged

    for moment in scenario.refreshes():
        if refresh_staged(engine, _refresh_id(moment)):
            finish_refresh(engine, refresh_id=_refresh_id(moment), now=moment)


# How far past a hand-over or a wake-up the simulator stops before it looks: the time-skipping
# server moves its clock only once the workflows and activities that were due have run.
_WAKE_SETTLE = timedelta(seconds=1)

# How long to wait, in real time, before asking a workflow that is behind the clock again.
_BEHIND_RETRY = 0.02

# How long a call that waits for the worker may take in real time: the time-skipping server
# answers a sleep once the workflows and activities due before its end have run, a query once
# the worker has answered it. On a busy machine a sleep took longer than the client's default
# deadline of 30 s ("Timeout expired", 4 parts at load 23).
_CALL_DEADLINE = timedelta(minutes=10)


@functools.cache
def _issuing_journeys(journeys_dir: Path) -> tuple[str, ...]:
    """The journeys with a `call` step: the only runs whose wake-up can issue a voucher."""
    from trouw.language.journey.loader import load_journeys
    from trouw.language.journey.model import CallStep

    return tuple(
        sorted(
            name
            for name, loaded in load_journeys(journeys_dir).items()
            if any(isinstance(step, CallStep) for step in loaded.journey.steps)
        )
    )


async def _next_wake(
    env: Any, customer_id: str, journeys: tuple[str, ...], *, after: datetime
) -> datetime | None:
    """The first moment after `after` (the scenario's clock, as the workflows read it) at which
    one of the customer's runs of these journeys wakes by itself: a run inside the customer
    workflow, or one it holds. One query asks them all.

    Every run of a simulation lives inside its customer workflow, never as a workflow of its
    own: `deliver` starts each customer workflow with `inline_runs`, and an execution on that
    path continues as new on it without child runs (`CustomerInput.runs` holds only the children
    of an execution before runs lived inside, which a simulation never starts). So this query,
    the outcome check and the termination address the customer workflow alone."""
    from temporalio.service import RPCError

    from trouw.language.contracts import NEXT_WAKE_QUERY, customer_workflow_id

    if not journeys:
        return None
    handle = env.client.get_workflow_handle(customer_workflow_id(customer_id))
    deadline = asyncio.get_running_loop().time() + _CALL_DEADLINE.total_seconds()
    while True:
        try:
            wake: datetime | None = await handle.query(
                NEXT_WAKE_QUERY,
                list(journeys),
                result_type=datetime | None,
                rpc_timeout=_CALL_DEADLINE,  # the worker answers it: as slow as a busy machine
            )
        except RPCError:  # no workflow yet (no event handed over), or ended: no run waits
            return None
        if wake is None or wake > after:
            return wake
        # A wake-up the clock has passed that the workflow has not handled yet: its task is
        # still to come (on a busy machine the test server's clock reaches the stop in real
        # time before the worker has taken the task). Read once it is handled, or the voucher
        # that wake-up issues is not in the ledger when the dues are read.
        if asyncio.get_running_loop().time() > deadline:
            return None
        await asyncio.sleep(_BEHIND_RETRY)


async def _advance(env: Any, env_moment: datetime) -> None:
    from temporalio.api.testservice.v1 import SleepRequest

    now = await env.get_current_time()
    if env_moment > now:
        request = SleepRequest()
        request.duration.FromTimedelta(env_moment - now)
        # env.sleep's own call, with a deadline of ours
        await env.client.test_service.unlock_time_skipping_with_sleep(
            request, timeout=_CALL_DEADLINE
        )


async def _stop_customer(
    env: Any,
    engine: Any,
    customer_id: str,
    histories: dict[str, Any] | None,
    run_histories: dict[str, list[Any]] | None = None,
) -> None:
    """End this customer's workflow at the scenario's end, so it stays out of the next one's;
    its runs end with it (see _next_wake)."""
    from trouw.language.contracts import customer_workflow_id

    workflow_id = customer_workflow_id(customer_id)
    handle = env.client.get_workflow_handle(workflow_id)
    try:
        if histories is not None:
            histories[workflow_id] = await handle.fetch_history()
        if run_histories is not None:
            run_histories[workflow_id] = await _run_chain(env.client, workflow_id)
        await handle.terminate("simulation ended")
    except Exception:  # noqa: BLE001 - already finished, or never started (no event reached it)
        pass


async def _run_chain(client: Any, workflow_id: str) -> list[Any]:
    """Every run's history of one workflow id, first run first (continue-as-new followed back)."""
    chain = [await client.get_workflow_handle(workflow_id).fetch_history()]
    while True:
        started = chain[0].events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            return chain
        previous = client.get_workflow_handle(
            workflow_id, run_id=started.continued_execution_run_id
        )
        chain.insert(0, await previous.fetch_history())


async def _unrecorded_outcomes(
    env: Any, customer_id: str, shift: timedelta, start: datetime, zone: ZoneInfo
) -> list[RunEntry]:
    """The customer workflow, when Temporal ended it (or it keeps failing) without a record
    saying so. Its runs live inside it (see _next_wake): a bug in one fails this workflow, and a
    run's own failures are recorded by the run."""
    from trouw.domain.why import temporal_outcome
    from trouw.language.contracts import customer_workflow_id

    workflow_id = customer_workflow_id(customer_id)
    outcome = await temporal_outcome(env.client, workflow_id, customer_id=customer_id)
    if outcome is None or outcome.status == "unknown":
        return []
    at = (outcome.at or await env.get_current_time()) + shift
    failed = outcome.status in ("failed", "failing", "timed_out")
    return [
        RunEntry(
            at=_minute(at, zone),
            customer=customer_id,
            journey="customer",
            step=None,
            outcome="failed" if failed else outcome.status,
            reason=f"in Temporal: {outcome.status}: {outcome.reason}",
            workflow_id=workflow_id,
            day=calendar_day(at, start, zone),
            seq=1_000_000,
            moment=at.isoformat(),
        )
    ]


def calendar_day(moment: datetime, start: datetime, zone: ZoneInfo) -> int:
    """Calendar days from the start to this moment, both as dates in the customer's zone."""
    return (moment.astimezone(zone).date() - start.astimezone(zone).date()).days


def collect_runs(
    engine: Any, scenario: Scenario, catalog: dict[str, LoadedJourney]
) -> list[RunEntry]:
    """The run events the workflows and match_journeys recorded, in the customers' time."""
    zones = {customer.id: ZoneInfo(customer.timezone) for customer in scenario.customers}
    entries = []
    with session_scope(engine) as session:
        rows = session.exec(select(JourneyRunEvent).order_by(col(JourneyRunEvent.id))).all()
        for row in rows:
            if row.at > scenario.end:
                continue
            zone = zones.get(row.customer_id, ZoneInfo("UTC"))
            entries.append(
                RunEntry(
                    at=_minute(row.at, zone),
                    customer=row.customer_id,
                    journey=row.journey,
                    step=row.step,
                    outcome=row.kind,
                    reason=row.reason,
                    workflow_id=row.workflow_id,
                    expression=row.expression,
                    location=locate(catalog, row.journey, row.step, row.expression),
                    day=calendar_day(row.at, scenario.start, zone),
                    seq=row.id or 0,
                    moment=row.at.isoformat(),
                )
            )
    return entries


def locate(
    catalog: dict[str, LoadedJourney], journey: str, step: str | None, expression: str | None
) -> str | None:
    """file:line:col of an expression in a journey file (under its step, or its trigger), or
    of the step; None for a run's start or end, which no one place in the file explains."""
    item = catalog.get(journey)
    if item is None or item.doc.root is None or (step is None and expression is None):
        return None
    path: list[Any] = ["trigger"]
    if step is not None:
        ids = [s.id for s in item.journey.steps]
        if step not in ids:
            return None
        path = ["steps", ids.index(step)]
    node: yaml.Node | None = item.doc.root
    for part in path:
        node = _child_node(node, part)
    if node is None:
        return None
    found = _scalar(node, expression) if expression else None
    mark = (found or node).start_mark
    return f"{item.doc.file}:{mark.line + 1}:{mark.column + 1}"


def _child_node(node: yaml.Node | None, part: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        return next((v for k, v in node.value if getattr(k, "value", None) == part), None)
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        child: yaml.Node = node.value[part]
        return child
    return None


def _scalar(node: yaml.Node, text: str) -> yaml.Node | None:
    if isinstance(node, yaml.ScalarNode):
        return node if str(node.value).strip() == text.strip() else None
    children: list[yaml.Node] = []
    if isinstance(node, yaml.MappingNode):
        children = [value for _key, value in node.value]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    for child in children:
        found = _scalar(child, text)
        if found is not None:
            return found
    return None


def _minute(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).replace(second=0, microsecond=0).isoformat(timespec="seconds")


def _run_order(entry: RunEntry) -> tuple[datetime, str, datetime, int]:
    moment = datetime.fromisoformat(entry.moment or entry.at)
    return (datetime.fromisoformat(entry.at), entry.customer, moment, entry.seq)


def collect_timeline(engine: Any, scenario: Scenario, outbox_dir: Path) -> list[TimelineEntry]:
    zones = {customer.id: ZoneInfo(customer.timezone) for customer in scenario.customers}
    end = scenario.end
    entries = []
    with session_scope(engine) as session:
        rows = session.exec(select(Message).order_by(col(Message.id))).all()
        for row in rows:
            match send_outcome(row.state):
                case "sent":
                    outcome, at = "sent", row.sent_at
                case "suppressed" | "failed":  # the timeline's reason tells a failure apart
                    outcome, at = "suppressed", row.decided_at or row.created_at
                case "deferred":
                    continue  # still deferred when the scenario ended
            if at is None or at > end:
                continue
            reason = row.reason if outcome == "suppressed" else None
            if row.state == "failed":
                reason = f"failed: {row.error}"
            zone = zones.get(row.customer_id, ZoneInfo("UTC"))
            entries.append(
                TimelineEntry(
                    at=_minute(at, zone),
                    customer=row.customer_id,
                    journey=row.journey,
                    step=row.step,
                    channel=row.channel,
                    template=row.template,
                    category=row.category,
                    outcome=outcome,
                    reason=reason,
                    subject=row.subject if row.channel == "email" else None,
                    message_key=row.message_key,
                    day=calendar_day(at, scenario.start, zone),
                    deferred=_first_deferral(row, zone),
                    moment=at.isoformat(),
                )
            )
    entries.sort(key=lambda e: (datetime.fromisoformat(e.at), e.customer, e.message_key))
    return entries


def _first_deferral(row: Message, zone: ZoneInfo) -> dict[str, str | None] | None:
    """The first time the policy deferred this message: when, its reason code and its text."""
    for entry in row.status_history or []:
        if entry.get("status") == "defer":
            at = datetime.fromisoformat(str(entry["at"]))
            return {
                "at": _minute(at, zone),
                "reason": entry.get("reason"),
                "text": entry.get("detail"),
            }
    return None


# Within one minute, a run's start comes first and its end last; each run's outcomes and
# messages in between, in the order they happened; runs side by side by journey name.
_ENDS = ("completed", "exited", "converted", "held_out", "failed", "cancelled", "terminated")


def records(result: SimulationResult) -> list[dict[str, Any]]:
    """Message decisions (the contract's records) and run outcomes, in time order.

    Every record has the contract's keys and `kind` (`message` or `run`); a run record leaves
    channel, template, category and subject null and puts what happened in `outcome`.
    """
    keyed: list[tuple[tuple[datetime, str, str, str, int, datetime, int], dict[str, Any]]] = []
    for entry in result.timeline:
        data = {k: v for k, v in asdict(entry).items() if k not in ("file", "moment")}
        data["kind"] = "message"
        run = entry.message_key.split("#")[0]
        order = (
            _floor(entry.at),
            entry.customer,
            entry.journey,
            run,
            1,
            datetime.fromisoformat(entry.moment or entry.at),
            # At the same instant (one workflow task), what the run noted came before the send.
            sys.maxsize,
        )
        keyed.append((order, data))
    for run_entry in result.runs:
        data = {
            "at": run_entry.at,
            "customer": run_entry.customer,
            "journey": run_entry.journey,
            "step": run_entry.step,
            "channel": None,
            "template": None,
            "category": None,
            "outcome": run_entry.outcome,
            "reason": run_entry.reason,
            "subject": None,
            "kind": "run",
            "day": run_entry.day,
            "workflow_id": run_entry.workflow_id,
            "expression": run_entry.expression,
            "location": run_entry.location,
        }
        group = 0 if run_entry.outcome == "started" else 2 if run_entry.outcome in _ENDS else 1
        order = (
            _floor(run_entry.at),
            run_entry.customer,
            run_entry.journey,
            run_entry.workflow_id or "",
            group,
            datetime.fromisoformat(run_entry.moment or run_entry.at),
            run_entry.seq,
        )
        keyed.append((order, data))
    keyed.sort(key=lambda item: item[0])
    return [data for _order, data in keyed]


def _floor(at: str) -> datetime:
    return datetime.fromisoformat(at).replace(second=0, microsecond=0)


def timeline_json(result: SimulationResult) -> str:
    return json.dumps(records(result), ensure_ascii=False, indent=2)


def failure_lines(result: SimulationResult) -> list[str]:
    """One line per distinct failure: where in which file, the journey, and why."""
    lines: dict[str, list[str]] = {}
    for run in result.failures:
        where = f"{run.location}: " if run.location else ""
        step = (
            f", step {run.step}"
            if run.step and f"step {run.step}" not in (run.reason or "")
            else ""
        )
        line = f"{where}journey {run.journey}{step}: {run.reason}"
        lines.setdefault(line, []).append(run.customer)
    return [
        f"{line} (customer {customers[0]})"
        if len(customers) == 1
        else f"{line} ({len(customers)} customers)"
        for line, customers in lines.items()
    ]


def reason_text(record: dict[str, Any]) -> str:
    """The reason column: a run's reason with its expression, a message's with its deferral."""
    reason = str(record.get("reason") or "")
    expression = record.get("expression")
    if expression and expression not in reason:
        reason = f"{reason}: {expression}" if reason else expression
    deferred = record.get("deferred")
    if deferred:
        note = f"deferred ({deferred.get('reason')}) from {str(deferred.get('at'))[:16]}"
        reason = f"{reason}; {note}" if reason else note
    return reason


def print_timeline(result: SimulationResult, console: Any) -> None:
    """The timeline as a table: one row per message decision and per run outcome."""
    from rich.markup import escape
    from rich.table import Table

    rows = records(result)
    table = Table(
        title=f"{len(result.timeline)} message decisions, {len(result.runs)} run outcomes "
        f"in {result.seconds:.1f} s"
    )
    for column in (
        "day",
        "local time",
        "customer",
        "journey",
        "step",
        "channel",
        "category",
        "outcome",
        "reason",
        "subject",
    ):
        table.add_column(column, overflow="fold")
    styles = {"sent": "green", "failed": "bold red", "suppressed": "", "message": ""}
    for record in rows:
        outcome = str(record["outcome"])
        style = styles.get(outcome, "cyan" if record["kind"] == "run" else "")
        table.add_row(
            str(record["day"]),
            datetime.fromisoformat(record["at"]).strftime("%Y-%m-%d %H:%M"),
            escape(record["customer"]),
            escape(record["journey"]),
            escape(record["step"] or ""),
            record["channel"] or "",
            record["category"] or "",
            f"[{style}]{escape(outcome)}[/]" if style else escape(outcome),
            escape(reason_text(record)),
            escape(record["subject"] or ""),
        )
    console.print(table)


def write_html(result: SimulationResult, scenario: Scenario, directory: Path) -> Path:
    """A timeline page (Jinja2, autoescaped); each sent email opens from it."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from trouw.providers.outbox import list_outbox

    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for outbox in result.outbox_dirs or [result.outbox_dir]:
        for entry in list_outbox(outbox):
            for name in entry.files:
                if name.endswith(".html"):
                    target = directory / "messages" / name
                    target.parent.mkdir(exist_ok=True)
                    shutil.copyfile(outbox / name, target)
                    files[entry.message_key] = f"messages/{name}"
    rows = [
        {
            **record,
            "local": record["at"][:16].replace("T", " "),
            "reason": reason_text(record),
            "link": files.get(record.get("message_key") or "")
            if record["outcome"] == "sent"
            else None,
        }
        for record in records(result)
    ]
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(["html"]),
        keep_trailing_newline=True,
    )
    page = env.get_template("simulation.html").render(
        messages=len(result.timeline),
        runs=len(result.runs),
        start=scenario.start.isoformat(),
        until=scenario.until,
        sent=sum(e.outcome == "sent" for e in result.timeline),
        suppressed=sum(e.outcome == "suppressed" for e in result.timeline),
        failed=len(result.failures),
        failures=failure_lines(result),
        rows=rows,
    )
    index = directory / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
