"""Reads journey and scenario YAML with line marks, so every error names file:line:col."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from trouw.language.journey.model import STEP_ACTIONS, Journey

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file, at a place a marketer can find."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class JourneyError(Exception):
    """One or more problems in journey or scenario files."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


@dataclass
class Document:
    """A parsed YAML file: its data and the node tree that knows where each value stands."""

    file: str
    data: Any
    root: yaml.Node | None

    def locate(self, path: Sequence[Any]) -> tuple[int, int]:
        """Line and column (1-based) of the value at path, or of its nearest parent."""
        node = self.root
        if node is None:
            return 1, 1
        best = node
        for part in path:
            child = _child(node, part)
            if child is None:
                continue  # a pydantic union tag or a missing key: stay on the parent
            node = best = child
        return best.start_mark.line + 1, best.start_mark.column + 1

    def key_position(self, path: Sequence[Any]) -> tuple[int, int] | None:
        """Where the key itself is written (for unknown keys)."""
        if not path:
            return None
        node = self.root
        for part in path[:-1]:
            child = _child(node, part) if node is not None else None
            if child is not None:
                node = child
        if isinstance(node, yaml.MappingNode):
            for key, _value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(path[-1]):
                    return key.start_mark.line + 1, key.start_mark.column + 1
        return None

    def problem(self, path: Sequence[Any], message: str) -> Problem:
        line, col = self.locate(path)
        return Problem(self.file, line, col, message)


def _child(node: yaml.Node | None, part: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                found: yaml.Node = value
                return found
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        if 0 <= part < len(node.value):
            item: yaml.Node = node.value[part]
            return item
    return None


def _duplicate_keys(doc: Document, node: yaml.Node | None) -> list[Problem]:
    problems: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    problems.append(
                        Problem(
                            doc.file,
                            key.start_mark.line + 1,
                            key.start_mark.column + 1,
                            f"duplicate key '{key.value}'",
                        )
                    )
                seen.add(key.value)
            problems.extend(_duplicate_keys(doc, value))
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            problems.extend(_duplicate_keys(doc, item))
    return problems


def _parse(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line:col) and the data: with libyaml's parser when PyYAML has it (a
    100-customer scenario took 1 CPU s to read twice in Python), through the same resolver and
    safe constructor. The tree is read apart from the data: building the data merges `<<`
    keys into the nodes. A syntax error is parsed again in Python, so its message and mark are
    PyYAML's own whichever parser found it."""
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.compose(text, Loader=fast), yaml.load(text, Loader=fast)
        except yaml.YAMLError:
            pass  # reported below, as PyYAML's Python parser words it
    return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)


def read_document(path: Path, *, display: str | None = None) -> Document:
    """Parse a YAML file; a syntax error becomes a Problem at its mark."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise JourneyError([Problem(name, 1, 1, f"cannot read file: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise JourneyError([Problem(name, 1, 1, "file is not UTF-8 text")]) from None
    try:
        root, data = _parse(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise JourneyError(
            [Problem(name, line, col, f"YAML syntax: {exc.problem or exc}")]
        ) from None
    doc = Document(name, data, root)
    duplicates = _duplicate_keys(doc, root)
    if duplicates:
        raise JourneyError(duplicates)
    return doc


def _describe(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    path = list(error.get("loc", ()))
    # An error about a whole list item (a step) names no field: the label says which step.
    field = str(path[-1]) if path and not isinstance(path[-1], int) else ""
    if kind == "extra_forbidden":
        return f"unknown key '{field}'"
    if kind == "missing":
        return f"missing key '{field}'"
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return f"{field}: {message}" if field else message


def _context_label(data: Any, loc: Sequence[Any]) -> str:
    """'step <id>: ' when the error is inside a step, so the marketer sees which one."""
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = data.get("steps") if isinstance(data, dict) else None
        if isinstance(steps, list) and loc[1] < len(steps) and isinstance(steps[loc[1]], dict):
            step_id = steps[loc[1]].get("id")
            if step_id:
                return f"step {step_id}: "
        return f"step #{loc[1] + 1}: "
    if len(loc) >= 2 and isinstance(loc[0], str) and isinstance(loc[1], int):
        return f"{loc[0]} #{loc[1] + 1}: "
    return ""


def validation_problems(
    doc: Document, exc: ValidationError, *, prefix: Sequence[Any] = ()
) -> list[Problem]:
    """Pydantic's errors at their place in the file; `prefix` is where the validated value
    stands (an item of a list validated on its own)."""
    problems = []
    for error in exc.errors():
        loc = _without_union_tag([*prefix, *error.get("loc", ())])
        error = {**error, "loc": tuple(loc)}
        position = None
        if error.get("type") == "extra_forbidden":
            position = doc.key_position(loc)
        line, col = position or doc.locate(loc)
        message = _context_label(doc.data, loc) + _describe(dict(error))
        problems.append(Problem(doc.file, line, col, message))
    return _unique(problems)


def _without_union_tag(loc: list[Any]) -> list[Any]:
    """Drop the step-type tag pydantic puts in the path (steps, 0, <tag>, field)."""
    if len(loc) > 3 and loc[0] == "steps" and isinstance(loc[1], int) and loc[2] in STEP_ACTIONS:
        return loc[:2] + loc[3:]
    return loc


def _unique(problems: Iterable[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    result = []
    for problem in problems:
        if problem not in seen:
            seen.add(problem)
            result.append(problem)
    return result


def parse_model(doc: Document, model: type[M]) -> M:
    if not isinstance(doc.data, dict):
        raise JourneyError([doc.problem([], "expected a mapping of keys at the top of the file")])
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        raise JourneyError(validation_problems(doc, exc)) from None


@dataclass(frozen=True)
class LoadedJourney:
    journey: Journey
    doc: Document


def load_journey(path: Path, *, display: str | None = None) -> LoadedJourney:
    doc = read_document(path, display=display)
    return LoadedJourney(parse_model(doc, Journey), doc)


def journey_files(directory: Path) -> list[Path]:
    """The journey files of a folder (not its sub-folders, not _settings.yaml)."""
    return sorted(p for p in directory.glob("*.yaml") if p.is_file() and not p.name.startswith("_"))


def load_files(files: Iterable[Path]) -> tuple[dict[str, LoadedJourney], list[Problem]]:
    """Load journey files by name; a file that fails or repeats a name becomes a Problem."""
    items: list[LoadedJourney] = []
    problems: list[Problem] = []
    for path in files:
        try:
            items.append(load_journey(path))
        except JourneyError as exc:
            problems.extend(exc.problems)
    loaded, repeated = by_name(items)
    return loaded, problems + repeated


def by_name(items: Iterable[LoadedJourney]) -> tuple[dict[str, LoadedJourney], list[Problem]]:
    """Journeys by name; a file that repeats a name is a Problem and is left out."""
    loaded: dict[str, LoadedJourney] = {}
    problems: list[Problem] = []
    for item in items:
        if item.journey.name in loaded:
            problems.append(
                item.doc.problem(
                    ["journey"],
                    f"journey '{item.journey.name}' is also defined in "
                    f"{loaded[item.journey.name].doc.file}",
                )
            )
            continue
        loaded[item.journey.name] = item
    return loaded, problems


def load_journeys(directory: Path) -> dict[str, LoadedJourney]:
    """Every journey in a folder by name; all problems of all files in one JourneyError."""
    loaded, problems = load_files(journey_files(directory))
    if problems:
        raise JourneyError(problems)
    return loaded
