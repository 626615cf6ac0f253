"""`trouw validate`: schema, graph, templates and activities of journey files, as file:line:col."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from trouw.journey.graph import structure_problems
from trouw.journey.loader import LoadedJourney, Problem, journey_files, load_files
from trouw.journey.model import CallStep, SendStep


def validate_loaded(
    item: LoadedJourney,
    *,
    templates: object | None,
    activities: Iterable[str],
    rendered: dict[tuple[str, str], list[str]] | None = None,
) -> list[Problem]:
    """Meaning checks on a journey that parsed: steps, templates that exist and render, activities."""
    journey, doc = item.journey, item.doc
    problems = [doc.problem(path, message) for path, message in structure_problems(journey)]
    known_activities = set(activities)
    for index, step in enumerate(journey.steps):
        if isinstance(step, SendStep) and templates is not None:
            channels = templates.channels(step.template)  # type: ignore[attr-defined]
            if step.send not in channels:
                where = f" (it exists for {', '.join(sorted(channels))})" if channels else ""
                problems.append(
                    doc.problem(
                        ["steps", index, "template"],
                        f"step {step.id}: unknown {step.send} template '{step.template}'{where}",
                    )
                )
            elif rendered is not None:
                for message in rendered.get((step.send, step.template), []):
                    problems.append(
                        doc.problem(
                            ["steps", index, "template"],
                            f"step {step.id}: template does not render: {message}",
                        )
                    )
        if isinstance(step, CallStep) and step.call not in known_activities:
            choices = ", ".join(sorted(known_activities)) or "none"
            problems.append(
                doc.problem(
                    ["steps", index, "call"],
                    f"step {step.id}: unknown activity '{step.call}' (registered: {choices})",
                )
            )
    return problems


def render_problems(
    templates: object, needed: set[tuple[str, str]]
) -> dict[tuple[str, str], list[str]]:
    """Render each template a journey uses, in every locale, with sample data."""
    from trouw.render import SHIPPED_LOCALES, TemplateError, sample_context

    result: dict[tuple[str, str], list[str]] = {}
    for channel, name in sorted(needed):
        messages = []
        for locale in SHIPPED_LOCALES:
            try:
                context = sample_context(name, locale)
                if channel == "email":
                    templates.render_email(name, locale, context)  # type: ignore[attr-defined]
                else:
                    templates.render_sms(name, locale, context)  # type: ignore[attr-defined]
            except TemplateError as exc:
                messages.append(f"{locale}: {exc}")
        result[(channel, name)] = messages
    return result


def validate_paths(
    paths: Iterable[Path], *, templates_dir: Path, activities: Iterable[str]
) -> tuple[list[LoadedJourney], list[Problem]]:
    """Validate files and folders; returns what loaded and every problem found."""
    from trouw.render import TemplateStore

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
    by_name, load_problems = load_files(files)
    problems.extend(load_problems)
    loaded = list(by_name.values())
    needed: set[tuple[str, str]] = {
        (step.send, step.template)
        for item in loaded
        for step in item.journey.steps
        if isinstance(step, SendStep)
        and templates is not None
        and step.send in templates.channels(step.template)
    }
    rendered = render_problems(templates, needed) if templates is not None else None
    activity_names = list(activities)
    for item in loaded:
        problems.extend(
            validate_loaded(item, templates=templates, activities=activity_names, rendered=rendered)
        )
    return loaded, problems
