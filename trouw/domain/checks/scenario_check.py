"""Every problem of a scenario file in one pass, each at the file, line and column of its field.

Fields are checked by the scenario's models, which are the API's input models (an email address,
a phone number, a time zone); the events are then taken in order through the real ingest, on a
scratch database, so what ingest would refuse (an order line with an unknown product, a
delivery of an order never bought) is reported here, at the field it is about.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from trouw.language.journey.loader import Document, Problem, validation_problems

# Events whose data comes from the journeys themselves (a voucher the simulation will issue,
# the message an open or a click is about).
_NEEDS_THE_RUN = {"voucher_redeemed", "open", "click", "complaint"}
_LINE = re.compile(r"^line (\d+): ")


def _each(
    doc: Document, key: str, model: type[BaseModel], raw: Any
) -> tuple[dict[int, Any], list[Problem]]:
    """Validate each item of a list on its own: every item's problems, with its place."""
    parsed: dict[int, Any] = {}
    problems: list[Problem] = []
    if not isinstance(raw, list):
        return parsed, problems
    for index, item in enumerate(raw):
        try:
            parsed[index] = model.model_validate(item)
        except ValidationError as exc:
            problems.extend(validation_problems(doc, exc, prefix=[key, index]))
    return parsed, problems


def scenario_problems(doc: Document) -> list[Problem]:
    from trouw.commands.simulate import Scenario, ScenarioCustomer, ScenarioEvent
    from trouw.domain.ingest import ProductIn
    from trouw.language.attributes import AttributeValueError, check_values, declared_attributes
    from trouw.settings import Settings

    data = doc.data
    if not isinstance(data, dict):
        return [doc.problem([], "expected a mapping of keys at the top of the file")]
    problems: list[Problem] = []
    lists = {"customers", "products", "events"}
    shell = {key: value for key, value in data.items() if key not in lists}
    shell.update({key: [] for key in lists})
    try:
        Scenario.model_validate({**shell, "customers": [{"id": "-"}]})
    except ValidationError as exc:
        problems.extend(validation_problems(doc, exc))
    try:  # the start alone, so the events are checked even when `until` is wrong
        start = Scenario.model_validate(
            {"start": data.get("start"), "customers": [{"id": "-"}]}
        ).start
    except ValidationError:
        start = None
    if not data.get("customers"):
        problems.append(doc.problem(["customers"], "customers: list at least one customer"))
    customers, found = _each(doc, "customers", ScenarioCustomer, data.get("customers"))
    problems.extend(found)
    declared = declared_attributes(Settings())  # the simulation's own config
    for index, customer in list(customers.items()):
        try:
            check_values(customer.attributes or {}, declared)
        except AttributeValueError as exc:
            where = ["customers", index, "attributes", exc.name]
            problems.append(doc.problem(where, f"customers #{index + 1}: {exc}"))
            customers.pop(index)
    products, found = _each(doc, "products", ProductIn, data.get("products"))
    problems.extend(found)
    events, found = _each(doc, "events", ScenarioEvent, data.get("events"))
    problems.extend(found)
    known = {c.id for c in customers.values()}
    raw_ids = {item.get("id") for item in data.get("customers") or [] if isinstance(item, dict)}
    for index, event in list(events.items()):
        if event.customer not in raw_ids:
            problems.append(
                doc.problem(
                    ["events", index, "customer"],
                    f"events #{index + 1}: unknown customer '{event.customer}'",
                )
            )
        if start is not None and _moment(start, event) < start:
            problems.append(
                doc.problem(
                    ["events", index, "at"], f"events #{index + 1}: before the scenario's start"
                )
            )
            events.pop(index)
    if start is not None:
        problems.extend(_ingest_dry_run(doc, start, customers, products, events, known))
    return _in_reading_order(problems)


def _moment(start: datetime, event: Any) -> datetime:
    from trouw.language.journey.durations import parse_duration

    return event.at if isinstance(event.at, datetime) else start + parse_duration(event.at)


def _ingest_dry_run(
    doc: Document,
    start: Any,
    customers: dict[int, Any],
    products: dict[int, Any],
    events: dict[int, Any],
    known: set[str],
) -> list[Problem]:
    """The events through the real ingest, in time order, on a scratch SQLite database."""
    from trouw.commands.simulate import Scenario, event_in
    from trouw.domain.db.engine import new_sqlite_database, session_scope
    from trouw.domain.ingest import CustomerIn, ingest_event, upsert_customer, upsert_product

    scenario = Scenario.model_validate(
        {"start": start, "customers": [c.model_dump() for c in customers.values()] or [{"id": "-"}]}
    )
    problems: list[Problem] = []
    with tempfile.TemporaryDirectory(prefix="trouw-scenario-") as scratch:
        engine = new_sqlite_database(Path(scratch) / "check.db")
        with session_scope(engine) as session:
            for product in products.values():
                upsert_product(session, product)
            for customer in customers.values():
                fields = customer.model_dump(exclude={"opt_in"}, exclude_none=True)
                upsert_customer(
                    session, CustomerIn.model_validate(fields), at=start, source="import"
                )
        ordered = sorted(events.items(), key=lambda item: (scenario.moment(item[1]), item[0]))
        for index, event in ordered:
            if event.customer not in known or event.type in _NEEDS_THE_RUN:
                continue
            try:
                incoming = event_in(scenario, event, index)
            except ValidationError as exc:
                problems.extend(validation_problems(doc, exc, prefix=["events", index]))
                continue
            try:
                with session_scope(engine) as session:
                    ingest_event(session, incoming, now=scenario.moment(event))
            except ValueError as exc:  # IngestError, or a model ingest builds
                problems.append(_ingest_problem(doc, index, str(exc).splitlines()[0]))
        engine.dispose()
    return problems


def _ingest_problem(doc: Document, index: int, message: str) -> Problem:
    """Place an ingest refusal at the field it is about (an order line, the order, the name)."""
    path: Sequence[Any] = ["events", index, "type"]
    line = _LINE.match(message)
    if line:
        path = ["events", index, "lines", int(line.group(1)) - 1, "sku"]
    elif "order" in message:
        path = ["events", index, "order"]
    elif "channel" in message:
        path = ["events", index, "channel"]
    elif "`name`" in message:
        path = ["events", index]
    return doc.problem(path, f"events #{index + 1}: {message}")


def _in_reading_order(problems: list[Problem]) -> list[Problem]:
    return sorted(dict.fromkeys(problems), key=lambda p: (p.line, p.col))
