"""`trouw simulate`: the real workflows and activities on the time-skipping server, per scenario."""

from __future__ import annotations

import asyncio
import html
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlmodel import col, select

from trouw.db.engine import make_engine, migrate, session_scope
from trouw.db.models import JourneyRun, Message
from trouw.ingest import (
    CustomerIn,
    EventIn,
    LineIn,
    ProductIn,
    ingest_event,
    upsert_customer,
    upsert_product,
    wire_event,
)
from trouw.journey.durations import DurationError, parse_duration
from trouw.journey.loader import JourneyError, Problem, load_journeys, parse_model, read_document
from trouw.locales import LocaleTag
from trouw.settings import Settings


class ScenarioModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScenarioCustomer(ScenarioModel):
    id: str = Field(min_length=1, max_length=64)
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    locale: LocaleTag = "nl-BE"
    timezone: str = "Europe/Brussels"
    birthday: date | None = None
    opt_in: dict[Literal["email", "sms"], bool] = Field(default_factory=dict)
    attributes: dict[str, Any] | None = None


class ScenarioEvent(ScenarioModel):
    at: str | datetime
    type: str
    customer: str
    id: str | None = None
    order: str | None = None
    channel: str | None = None
    store: str | None = None
    lines: list[LineIn] = Field(default_factory=list)
    total: Decimal | None = None
    code: str | None = None
    name: str | None = None
    rating: int | None = None
    properties: dict[str, Any] = Field(default_factory=dict)

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


class Scenario(ScenarioModel):
    start: datetime
    until: str = "400d"
    customers: list[ScenarioCustomer] = Field(min_length=1)
    products: list[ProductIn] = Field(default_factory=list)
    events: list[ScenarioEvent] = Field(default_factory=list)

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


def load_scenario(path: Path) -> Scenario:
    doc = read_document(path)
    scenario = parse_model(doc, Scenario)
    problems: list[Problem] = []
    known = {customer.id for customer in scenario.customers}
    for index, event in enumerate(scenario.events):
        if event.customer not in known:
            problems.append(
                doc.problem(
                    ["events", index, "customer"],
                    f"events #{index + 1}: unknown customer '{event.customer}'",
                )
            )
        if scenario.moment(event) < scenario.start:
            problems.append(
                doc.problem(
                    ["events", index, "at"], f"events #{index + 1}: before the scenario's start"
                )
            )
        try:
            _event_in(scenario, event, index)
        except ValueError as exc:
            message = (
                str(exc).splitlines()[0]
                if "validation error" not in str(exc)
                else _first_error(exc)
            )
            problems.append(
                doc.problem(["events", index, "type"], f"events #{index + 1}: {message}")
            )
    if problems:
        raise JourneyError(problems)
    return scenario


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return f"{where}: {first.get('msg')}"
    return str(exc)


def _event_in(scenario: Scenario, event: ScenarioEvent, index: int) -> EventIn:
    data = event.model_dump(exclude={"at", "id"}, exclude_none=True)
    data["lines"] = [line.model_dump(exclude_none=True) for line in event.lines]
    return EventIn(
        id=event.id or f"sim-{index + 1}", at=scenario.moment(event), source="simulation", **data
    )


@dataclass(frozen=True)
class TimelineEntry:
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


@dataclass
class SimulationResult:
    timeline: list[TimelineEntry]
    outbox_dir: Path
    seconds: float
    workdir: Path
    outbox_dirs: list[Path] = field(default_factory=list)


Progress = Callable[[int, int, str], None]


def default_parallelism(customers: int) -> int:
    """Processes to use: customers are independent, so big scenarios use every core."""
    if customers < 8:
        return 1
    return max(1, min(os.cpu_count() or 1, 4, customers // 4))


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
    count = processes or default_parallelism(len(scenario.customers))
    if count <= 1:
        return await simulate(
            scenario,
            journeys_dir=journeys_dir,
            templates_dir=templates_dir,
            workdir=workdir,
            progress=progress,
        )
    import concurrent.futures
    import multiprocessing

    loop = asyncio.get_running_loop()
    started = loop.time()
    load_journeys(journeys_dir)
    home = workdir or Path(tempfile.mkdtemp(prefix="trouw-sim-"))
    ids = [customer.id for customer in scenario.customers]
    parts = [ids[n::count] for n in range(count)]
    payload = scenario.model_dump(mode="json")
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
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
        ]
        done = 0
        timeline: list[TimelineEntry] = []
        outboxes: list[Path] = []
        for future in asyncio.as_completed(futures):
            entries, outbox = await future
            timeline.extend(TimelineEntry(**entry) for entry in entries)
            outboxes.append(Path(outbox))
            done += 1
            if progress:
                progress(sum(len(p) for p in parts[:done]), len(ids), "")
    timeline.sort(key=lambda e: (datetime.fromisoformat(e.at), e.customer, e.message_key))
    return SimulationResult(timeline, outboxes[0], loop.time() - started, home, outboxes)


def _simulate_part(
    payload: dict[str, Any], customer_ids: list[str], journeys: str, templates: str, workdir: str
) -> tuple[list[dict[str, Any]], str]:
    """One process's share of a parallel simulation (a top-level function, so it can be spawned)."""
    from trouw.temporal import quiet_runtime

    quiet_runtime()
    wanted = set(customer_ids)
    part = dict(payload)
    part["customers"] = [c for c in payload["customers"] if c["id"] in wanted]
    part["events"] = [e for e in payload["events"] if e["customer"] in wanted]
    scenario = Scenario.model_validate(part)
    result = asyncio.run(
        simulate(
            scenario,
            journeys_dir=Path(journeys),
            templates_dir=Path(templates),
            workdir=Path(workdir),
        )
    )
    return [asdict(entry) for entry in result.timeline], str(result.outbox_dir)


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
) -> SimulationResult:
    """Run each customer's scenario on one time-skipping server, one customer after another.

    Customers are independent, so running them one at a time loses nothing and avoids the
    time-skipping server's trouble with many unrelated workflows at once.
    """
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from activities.services import Services
    from trouw.temporal import binary, deliver
    from trouw.worker import build_worker

    load_journeys(journeys_dir)  # every problem reported before anything runs
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
    )
    engine = make_engine(settings.effective_database_url)
    migrate(engine)
    services = Services.from_settings(settings, engine=engine)
    with session_scope(engine) as session:
        for product in scenario.products:
            upsert_product(session, product)
        for customer in scenario.customers:
            upsert_customer(
                session,
                CustomerIn(**customer.model_dump(exclude={"opt_in"})),
                at=scenario.start,
                source="import",
            )
            for channel, granted in customer.opt_in.items():
                from trouw.consent import record_consent

                record_consent(
                    session,
                    customer_id=customer.id,
                    channel=channel,
                    scope="promotional",
                    granted=granted,
                    at=scenario.start,
                    source="import",
                    wording_version="simulation",
                )
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )
    try:
        worker = build_worker(
            env.client, services, task_queue=settings.task_queue, sandboxed=sandboxed
        )
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
                )
            if progress:
                progress(total, total, "")
    finally:
        await env.shutdown()
    timeline = collect_timeline(engine, scenario, settings.outbox_dir)
    engine.dispose()
    return SimulationResult(timeline, settings.outbox_dir, loop.time() - started, home)


async def _simulate_customer(
    env: Any,
    scenario: Scenario,
    customer_id: str,
    settings: Settings,
    engine: Any,
    deliver: Any,
    histories: dict[str, Any] | None,
    search_attributes: bool,
) -> None:
    base = await env.get_current_time()
    offset = (scenario.start - base).total_seconds()
    shift = timedelta(seconds=offset)
    indexed = [
        (scenario.moment(event), index, event)
        for index, event in enumerate(scenario.events)
        if event.customer == customer_id
    ]
    for moment, index, event in sorted(indexed, key=lambda item: (item[0], item[1])):
        await _advance(env, moment - shift)
        with session_scope(engine) as session:
            row, _new = ingest_event(session, _event_in(scenario, event, index), now=moment)
            wire = wire_event(row)
        await deliver(
            env.client,
            wire,
            task_queue=settings.task_queue,
            search_attributes=search_attributes,
            clock_offset_seconds=offset,
        )
    await _advance(env, scenario.end - shift)
    await _stop_customer(env, engine, customer_id, histories)


async def _advance(env: Any, env_moment: datetime) -> None:
    now = await env.get_current_time()
    if env_moment > now:
        await env.sleep(env_moment - now)


async def _stop_customer(
    env: Any, engine: Any, customer_id: str, histories: dict[str, Any] | None
) -> None:
    """End this customer's workflows at the scenario's end, so they stay out of the next one's."""
    from trouw.contracts import customer_workflow_id

    with session_scope(engine) as session:
        ids = list(
            session.exec(
                select(JourneyRun.workflow_id).where(JourneyRun.customer_id == customer_id)
            ).all()
        )
    for workflow_id in [customer_workflow_id(customer_id), *ids]:
        handle = env.client.get_workflow_handle(workflow_id)
        if histories is not None:
            histories[workflow_id] = await handle.fetch_history()
        try:
            await handle.terminate("simulation ended")
        except Exception:  # noqa: BLE001 - already finished
            pass


def collect_timeline(engine: Any, scenario: Scenario, outbox_dir: Path) -> list[TimelineEntry]:
    zones = {customer.id: ZoneInfo(customer.timezone) for customer in scenario.customers}
    end = scenario.end
    entries = []
    with session_scope(engine) as session:
        rows = session.exec(select(Message).order_by(col(Message.id))).all()
        for row in rows:
            if row.state in ("sent",):
                outcome, at = "sent", row.sent_at
            elif row.state in ("suppressed", "failed", "unknown"):
                outcome, at = "suppressed", row.decided_at or row.created_at
            else:
                continue  # still deferred when the scenario ended
            if at is None or at > end:
                continue
            reason = row.reason if outcome == "suppressed" else None
            if row.state == "failed":
                reason = f"failed: {row.error}"
            local = at.astimezone(zones.get(row.customer_id, ZoneInfo("UTC")))
            entries.append(
                TimelineEntry(
                    at=local.isoformat(timespec="seconds"),
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
                )
            )
    entries.sort(key=lambda e: (datetime.fromisoformat(e.at), e.customer, e.message_key))
    return entries


def timeline_json(entries: list[TimelineEntry]) -> str:
    return json.dumps(
        [{k: v for k, v in asdict(e).items() if k != "file"} for e in entries],
        ensure_ascii=False,
        indent=2,
    )


def write_html(result: SimulationResult, scenario: Scenario, directory: Path) -> Path:
    """A timeline page; each sent email opens from it."""
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
    rows = []
    for e in result.timeline:
        day = (datetime.fromisoformat(e.at) - scenario.start).days
        link = files.get(e.message_key) if e.outcome == "sent" else None
        subject = html.escape(e.subject or "")
        cell = f'<a href="{html.escape(link)}">{subject or "open"}</a>' if link else subject
        rows.append(
            "<tr class='{cls}'><td>{day}</td><td>{at}</td><td>{customer}</td><td>{journey}</td>"
            "<td>{step}</td><td>{channel}</td><td>{category}</td><td>{outcome}</td><td>{reason}</td>"
            "<td>{subject}</td></tr>".format(
                cls=e.outcome,
                day=day,
                at=html.escape(e.at[:16].replace("T", " ")),
                customer=html.escape(e.customer),
                journey=html.escape(e.journey),
                step=html.escape(e.step),
                channel=e.channel,
                category=e.category,
                outcome=e.outcome,
                reason=html.escape(e.reason or ""),
                subject=cell,
            )
        )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Trouw simulation</title><style>
body{{font-family:system-ui,sans-serif;margin:2rem}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;font-size:.9rem}}
tr.suppressed{{color:#888}}th{{background:#f3f5f0}}</style></head><body>
<h1>Simulation: {len(result.timeline)} message decisions</h1>
<p>From {html.escape(scenario.start.isoformat())} for {html.escape(scenario.until)};
{sum(e.outcome == "sent" for e in result.timeline)} sent,
{sum(e.outcome == "suppressed" for e in result.timeline)} suppressed.</p>
<table><thead><tr><th>day</th><th>local time</th><th>customer</th><th>journey</th><th>step</th>
<th>channel</th><th>category</th><th>outcome</th><th>reason</th><th>subject</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table></body></html>"""
    index = directory / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
