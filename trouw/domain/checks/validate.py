"""`trouw validate`: every problem of every journey file in one pass, as file:line:col: message.

Schema, step graph, event types, every name in every expression and template (against the
typed context in trouw/domain/checks/scope.py), template categories, activities. A file that does
not fully parse is still checked as far as it goes: its valid steps, targets and expressions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from trouw.domain.checks.scope import (
    ANY,
    CALL_RESULTS,
    CUSTOM_PREFIX,
    DATETIME,
    DERIVED_EVENTS,
    TEXT,
    TYPE_NAMES,
    Declarations,
    Shape,
    attribute_shapes,
    base_scope,
    event_shape,
    template_scope,
)
from trouw.domain.checks.typecheck import check_names, expression_shape, unknown_template_names
from trouw.language.attributes import Declared, checker_types, journey_attribute_problems
from trouw.language.journey.graph import structure_problems
from trouw.language.journey.loader import (
    Document,
    JourneyError,
    LoadedJourney,
    Problem,
    by_name,
    journey_files,
    parse_model,
    read_document,
    validation_problems,
)
from trouw.language.journey.model import (
    ID_PATTERN,
    BranchStep,
    CallStep,
    Journey,
    JourneySettings,
    SendStep,
    Step,
    Strict,
    Trigger,
    UpdateStep,
    WaitForStep,
    WaitStep,
    WaitUntilStep,
)
from trouw.language.vocabulary import CATEGORIES

SETTINGS_FILE = "_settings.yaml"
TypeName = Literal["text", "number", "bool", "date", "datetime", "any"]


class JourneySetSettings(Strict):
    """journeys/_settings.yaml: what the journeys of a folder declare in one place."""

    # name -> its properties and their types; used as `custom:<name>` in journeys
    custom_events: dict[str, dict[str, TypeName] | None] = Field(default_factory=dict)


def load_declarations(
    directory: Path, attributes: Mapping[str, Shape] | None = None
) -> tuple[Declarations, list[Problem]]:
    """The folder's _settings.yaml (custom events), with the customer attributes declared."""
    path = directory / SETTINGS_FILE
    attrs = dict(attributes or {})
    if not path.is_file():
        return Declarations(attributes=attrs), []
    try:
        doc = read_document(path)
        settings = parse_model(doc, JourneySetSettings)
    except JourneyError as exc:
        return Declarations(attributes=attrs), exc.problems
    problems = []
    events: dict[str, dict[str, Shape]] = {}
    for name, props in settings.custom_events.items():
        if not re.match(ID_PATTERN, name):
            problems.append(
                doc.problem(
                    ["custom_events", name],
                    f"custom event name '{name}': use lower case letters, digits and _",
                )
            )
            continue
        events[name] = {prop: TYPE_NAMES[kind] for prop, kind in (props or {}).items()}
    return Declarations(custom_events=events, attributes=attrs), problems


@dataclass
class Checked:
    """A journey file as far as it could be read: the journey (partial when it did not parse)."""

    item: LoadedJourney
    partial: bool
    placeholders: frozenset[int]  # indexes of steps that did not parse


def _try(model: Any, value: Any) -> Any:
    try:
        return TypeAdapter(model).validate_python(value)
    except ValidationError:
        return None


def partial_journey(doc: Document) -> Checked | None:
    """The parts of a journey that parse, so later checks still run; None if nothing does."""
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        return None
    trigger = _try(Trigger, data.get("trigger"))
    settings = _try(JourneySettings, data.get("settings") or {}) or JourneySettings()
    steps: list[Any] = []
    placeholders: set[int] = set()
    for index, raw in enumerate(data["steps"]):
        step = _try(Step, raw)
        if step is None:
            raw = raw if isinstance(raw, dict) else {}
            target = raw.get("next")
            step = WaitStep.model_construct(
                id=str(raw.get("id") or f"#{index + 1}"),
                wait="0s",
                next=target if isinstance(target, str) else None,
                description=None,
            )
            placeholders.add(index)
        steps.append(step)
    if not steps:
        return None
    journey = Journey.model_construct(
        journey=str(data.get("journey") or Path(doc.file).stem),
        description=None,
        trigger=trigger
        or Trigger.model_construct(
            event=None,
            date=None,
            at="09:00",
            every=None,
            when=None,
            for_each=None,
            as_="item",
            reentry="order",
        ),
        settings=settings,
        steps=steps,
    )
    return Checked(LoadedJourney(journey, doc), True, frozenset(placeholders))


def read_journey(path: Path) -> tuple[Checked | None, list[Problem]]:
    try:
        doc = read_document(path)
    except JourneyError as exc:
        return None, exc.problems
    if not isinstance(doc.data, dict):
        return None, [doc.problem([], "expected a mapping of keys at the top of the file")]
    try:
        journey = Journey.model_validate(doc.data)
    except ValidationError as exc:
        return partial_journey(doc), validation_problems(doc, exc)
    return Checked(LoadedJourney(journey, doc), False, frozenset()), []


# -- meaning checks ----------------------------------------------------------------------------


def _event_problem(event: str, declarations: Declarations, *, allow_any: bool) -> str | None:
    known = declarations.event_types()
    if event in known or (allow_any and event == "any"):
        return None
    import difflib

    close = difflib.get_close_matches(event, known + (["any"] if allow_any else []), n=1)
    if close:
        return f"unknown event '{event}' (did you mean '{close[0]}'?)"
    if event.startswith(CUSTOM_PREFIX):
        return (
            f"unknown event '{event}': declare it under custom_events in the folder's "
            f"{SETTINGS_FILE}"
        )
    return (
        f"unknown event '{event}' (known: {', '.join(known)}; custom events are "
        f"custom:<name>, declared in {SETTINGS_FILE})"
    )


def event_problems(checked: Checked, declarations: Declarations) -> list[Problem]:
    journey, doc = checked.item.journey, checked.item.doc
    found: list[tuple[list[Any], str, str | None]] = []
    if journey.trigger.event is not None:
        found.append(
            (
                ["trigger", "event"],
                "trigger: ",
                _event_problem(journey.trigger.event, declarations, allow_any=True),
            )
        )
        if journey.trigger.event in DERIVED_EVENTS and journey.trigger.reentry == "order":
            # The default re-entry key is the order id, and these events carry none.
            found.append(
                (
                    ["trigger", "event"],
                    "trigger: ",
                    f"{journey.trigger.event} carries no order, so `reentry: order` (the default) "
                    "never starts a run: choose reentry: event, customer or an expression",
                )
            )
    for index, rule in enumerate(journey.settings.exit_on):
        found.append(
            (
                ["settings", "exit_on", index, "event"],
                f"exit_on #{index + 1}: ",
                _event_problem(rule.event, declarations, allow_any=False),
            )
        )
    for index, goal in enumerate(journey.settings.goals):
        found.append(
            (
                ["settings", "goals", index, "event"],
                f"goals #{index + 1}: ",
                _event_problem(goal.event, declarations, allow_any=False),
            )
        )
    for index, step in enumerate(journey.steps):
        if isinstance(step, WaitForStep) and index not in checked.placeholders:
            found.append(
                (
                    ["steps", index, "wait_for"],
                    f"step {step.id}: wait_for: ",
                    _event_problem(step.wait_for, declarations, allow_any=False),
                )
            )
    return [doc.problem(path, label + message) for path, label, message in found if message]


def trigger_types(journey: Journey) -> list[str]:
    if journey.trigger.event is not None:
        return [journey.trigger.event]
    if journey.trigger.date is not None:
        return ["register", "purchase"]
    return ["any"]


def run_scope(checked: Checked, declarations: Declarations) -> dict[str, Shape]:
    """What a run's conditions can read: the base, the trigger, waited-for events, call results,
    the for_each item and the split arms taken."""
    journey = checked.item.journey
    scope = base_scope(declarations)
    trigger_scope = {
        **scope,
        "event": event_shape(declarations, trigger_types(journey), full=False),
        "now": DATETIME,
    }
    scope["trigger"] = event_shape(declarations, trigger_types(journey))
    waited = {
        step.wait_for: event_shape(declarations, [step.wait_for])
        for index, step in enumerate(journey.steps)
        if isinstance(step, WaitForStep) and index not in checked.placeholders
    }
    scope["events"] = Shape("record", fields=waited)
    scope["now"] = DATETIME
    scope["splits"] = Shape("record", fields={s.id: TEXT for s in journey.steps if s.id})
    if journey.trigger.for_each:
        source = expression_shape(journey.trigger.for_each, trigger_scope)
        item = source.item if source.kind == "list" and source.item is not None else ANY
        scope[journey.trigger.as_] = item
    for step in journey.steps:
        if isinstance(step, CallStep) and step.as_:
            scope[step.as_] = CALL_RESULTS.get(step.call, ANY)
    return scope


def expressions_of(
    checked: Checked, declarations: Declarations
) -> Iterable[tuple[list[Any], str, str, dict[str, Shape]]]:
    """(path in the file, label, expression, scope) for every expression in a journey."""
    journey = checked.item.journey
    run = run_scope(checked, declarations)
    trigger = journey.trigger
    trigger_scope: dict[str, Shape] = {
        **base_scope(declarations),
        "event": event_shape(declarations, trigger_types(journey), full=False),
        "now": DATETIME,
    }
    if trigger.when:
        yield ["trigger", "when"], "trigger: when: ", trigger.when, trigger_scope
    if trigger.for_each:
        yield ["trigger", "for_each"], "trigger: for_each: ", trigger.for_each, trigger_scope
    if trigger.date:
        yield ["trigger", "date"], "trigger: date: ", trigger.date, run
    if trigger.reentry not in ("order", "customer", "event"):
        scope = {**trigger_scope, trigger.as_: run.get(trigger.as_, ANY)}
        yield ["trigger", "reentry"], "trigger: reentry: ", trigger.reentry, scope
    for index, rule in enumerate(journey.settings.exit_on):
        if rule.when:
            scope = {**run, "event": event_shape(declarations, [rule.event])}
            yield (
                ["settings", "exit_on", index, "when"],
                f"exit_on #{index + 1}: when: ",
                (rule.when),
                scope,
            )
    for index, step in enumerate(journey.steps):
        if index in checked.placeholders:
            continue
        label = f"step {step.id}: "
        if isinstance(step, SendStep) and step.when:
            yield ["steps", index, "when"], label + "when: ", step.when, run
        elif isinstance(step, BranchStep):
            for number, case in enumerate(step.branch):
                yield ["steps", index, "branch", number, "if"], label + "if: ", case.if_, run
        elif isinstance(step, WaitUntilStep) and step.wait_until.date:
            path = ["steps", index, "wait_until", "date"]
            if isinstance(checked.item.doc.data, dict):
                raw = checked.item.doc.data["steps"][index].get("wait_until")
                path = path if isinstance(raw, dict) else ["steps", index, "wait_until"]
            yield path, label + "wait_until: ", step.wait_until.date, run
        elif isinstance(step, UpdateStep):
            for name, source in step.update.attributes.items():
                yield (
                    ["steps", index, "update", "attributes", name],
                    label + f"{name}: ",
                    (source),
                    run,
                )
        elif isinstance(step, WaitForStep) and step.when:
            scope = {**run, "event": event_shape(declarations, [step.wait_for])}
            yield ["steps", index, "when"], label + "when: ", step.when, scope


def expression_problems(checked: Checked, declarations: Declarations) -> list[Problem]:
    doc = checked.item.doc
    problems = []
    for path, label, source, scope in expressions_of(checked, declarations):
        for message in check_names(source, scope):
            problems.append(doc.problem(path, label + message))
    return problems


def _strictness(category: str) -> int:
    return CATEGORIES.index(category) if category in CATEGORIES else -1


def template_problems(
    checked: Checked,
    *,
    templates: Any,
    names: Mapping[tuple[str, str], list[str]],
) -> list[Problem]:
    """Templates that exist for the channel, render, know every name, and keep their category."""
    journey, doc = checked.item.journey, checked.item.doc
    problems = []
    for index, step in enumerate(journey.steps):
        if not isinstance(step, SendStep) or index in checked.placeholders:
            continue
        channels = templates.channels(step.template)
        if step.send not in channels:
            where = f" (it exists for {', '.join(sorted(channels))})" if channels else ""
            problems.append(
                doc.problem(
                    ["steps", index, "template"],
                    f"step {step.id}: unknown {step.send} template '{step.template}'{where}",
                )
            )
            continue
        for message in names.get((step.send, step.template), []):
            problems.append(
                doc.problem(["steps", index, "template"], f"step {step.id}: template {message}")
            )
        declared = templates.category(step.send, step.template)
        if declared not in CATEGORIES:
            problems.append(
                doc.problem(
                    ["steps", index, "template"],
                    f"step {step.id}: {step.send} template '{step.template}' declares no "
                    f"category: add `category: transactional|service|promotional` to its "
                    f"template.yaml",
                )
            )
            continue
        if step.category is not None and _strictness(step.category) < _strictness(declared):
            problems.append(
                doc.problem(
                    ["steps", index, "category"],
                    f"step {step.id}: category {step.category} is weaker than template "
                    f"'{step.template}' ({declared}); a step may only make it stricter",
                )
            )
        elif step.category is None and _strictness(journey.settings.category) < _strictness(
            declared
        ):
            problems.append(
                doc.problem(
                    ["steps", index, "template"],
                    f"step {step.id}: template '{step.template}' is {declared}, but the step "
                    f"sends it as {journey.settings.category} (the journey's category); set "
                    f"`category: {declared}`",
                )
            )
    return problems


def template_name_problems(
    templates: Any, needed: set[tuple[str, str]], declarations: Declarations
) -> dict[tuple[str, str], list[str]]:
    """Per template: names it uses that the context does not have, and renders that fail."""
    from trouw.domain.render import SHIPPED_LOCALES, TemplateError, sample_context

    scope = template_scope(declarations)
    result: dict[tuple[str, str], list[str]] = {}
    for channel, name in sorted(needed):
        messages: list[str] = []
        seen: set[str] = set()  # one line per unknown name, not one per locale and part
        for locale in SHIPPED_LOCALES:
            try:
                unknown = unknown_template_names(templates, channel, name, locale, scope, seen=seen)
                messages.extend(unknown)
                if seen:
                    continue  # rendering would stop at the first of them, less precisely
                context = sample_context(name, locale, attributes=declarations.attributes)
                if channel == "email":
                    templates.render_email(name, locale, context)
                else:
                    templates.render_sms(name, locale, context)
            except TemplateError as exc:
                messages.append(f"does not render in {locale}: {exc}")
            except Exception as exc:  # noqa: BLE001 - a template Jinja cannot parse
                messages.append(f"does not parse in {locale}: {exc}")
        result[(channel, name)] = list(dict.fromkeys(messages))
    return result


def _raw_targets(doc: Document, index: int) -> list[str]:
    """The step ids a step that did not parse names (next, goto, else, on_timeout)."""
    raw = doc.data["steps"][index] if isinstance(doc.data, dict) else None
    if not isinstance(raw, dict):
        return []
    found = [raw.get(key) for key in ("next", "else", "on_timeout")]
    for key in ("branch", "split"):
        for case in raw.get(key) or []:
            found.append(case.get("goto") if isinstance(case, dict) else None)
    return [target for target in found if isinstance(target, str)]


def validate_checked(
    checked: Checked,
    *,
    templates: Any | None,
    activities: Iterable[str],
    declarations: Declarations,
    names: Mapping[tuple[str, str], list[str]],
) -> list[Problem]:
    """Meaning checks on a journey as far as it parsed."""
    journey, doc = checked.item.journey, checked.item.doc
    problems = []
    loose = {journey.steps[index].id: _raw_targets(doc, index) for index in checked.placeholders}
    for path, message in structure_problems(journey, loose=loose):
        problems.append(doc.problem(path, message))
    problems.extend(event_problems(checked, declarations))
    problems.extend(expression_problems(checked, declarations))
    if templates is not None:
        problems.extend(template_problems(checked, templates=templates, names=names))
    known_activities = set(activities)
    for index, step in enumerate(journey.steps):
        if isinstance(step, CallStep) and step.call not in known_activities:
            choices = ", ".join(sorted(known_activities)) or "none"
            problems.append(
                doc.problem(
                    ["steps", index, "call"],
                    f"step {step.id}: unknown activity '{step.call}' (registered: {choices})",
                )
            )
    return problems


def validate_paths(
    paths: Iterable[Path],
    *,
    templates_dir: Path,
    activities: Iterable[str],
    attributes: Declared | None = None,
) -> tuple[list[LoadedJourney], list[Problem]]:
    """Validate files and folders: what fully loaded, and every problem of every file.

    `attributes` are the customer attributes declared in config (trouw.language.attributes): reading or
    writing another one is an error, and so is a personal one read where it would travel.
    """
    from trouw.domain.render import TemplateStore

    shapes = attribute_shapes(checker_types(attributes or {}))
    files: list[Path] = []
    problems: list[Problem] = []
    for path in paths:
        if path.is_dir():
            files.extend(journey_files(path))
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(str(path), 1, 1, "no such file or folder"))
    templates = TemplateStore(templates_dir) if templates_dir.is_dir() else None
    if templates is None:
        problems.append(Problem(str(templates_dir), 1, 1, "templates folder not found"))
    declarations: dict[Path, Declarations] = {}
    for folder in sorted({path.parent for path in files}):
        declarations[folder], found = load_declarations(folder, shapes)
        problems.extend(found)
    read: list[Checked] = []
    for path in files:
        checked, found = read_journey(path)
        problems.extend(found)
        if checked is not None:
            read.append(checked)
    needed: set[tuple[str, str]] = {
        (step.send, step.template)
        for checked in read
        for step in checked.item.journey.steps
        if isinstance(step, SendStep)
        and templates is not None
        and step.send in templates.channels(step.template)
    }
    any_declarations = next(iter(declarations.values()), Declarations(attributes=shapes))
    names = (
        template_name_problems(templates, needed, any_declarations) if templates is not None else {}
    )
    for checked in read:
        folder = Path(checked.item.doc.file).parent
        problems.extend(
            validate_checked(
                checked,
                templates=templates,
                activities=activities,
                declarations=declarations[folder],
                names=names,
            )
        )
        if attributes is not None and not checked.partial:
            problems.extend(
                checked.item.doc.problem(path, message)
                for path, message in journey_attribute_problems(checked.item.journey, attributes)
            )
    loaded, repeated = by_name(checked.item for checked in read if not checked.partial)
    problems.extend(repeated)
    return list(loaded.values()), _in_reading_order(problems)


def _in_reading_order(problems: Iterable[Problem]) -> list[Problem]:
    """Each problem once; per file from the top down, files in the order they were named."""
    unique = list(dict.fromkeys(problems))
    files = list(dict.fromkeys(problem.file for problem in unique))
    return sorted(unique, key=lambda p: (files.index(p.file), p.line, p.col))
