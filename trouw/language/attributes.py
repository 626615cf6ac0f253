"""Customer attributes: declared once in config (name, type, personal data or not), checked here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from trouw.settings import Settings

AttributeType = Literal["string", "integer", "number", "boolean", "date"]
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
_TRUE = frozenset({"true", "yes", "ja", "oui", "1"})
_FALSE = frozenset({"false", "no", "nee", "non", "0"})


class AttributeDeclaration(BaseModel):
    """One attribute customers may carry: `customer.attributes.<name>` in journeys and templates.

    A personal one (a loyalty card number, a pet's name) is personal data: journeys may branch
    on it, but its value never travels through a Temporal history.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, max_length=64)
    type: AttributeType
    personal: bool = False


Declared = Mapping[str, AttributeDeclaration]


class AttributeValueError(ValueError):
    """An attribute that is not declared, or a value not of its declared type; names it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def declared_attributes(settings: Settings) -> dict[str, AttributeDeclaration]:
    """The declared attributes by name: the one place the rest of Trouw asks."""
    return {declaration.name: declaration for declaration in settings.attributes}


_JSON_SCHEMA_TYPES: dict[AttributeType, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "date": {"type": "string", "format": "date"},
}


def attributes_json_schema(declared: Declared) -> dict[str, Any]:
    """The JSON Schema of `attributes` as the API takes it: declared names only, each of its
    type or null (which clears it)."""
    return {
        "type": "object",
        "properties": {
            name: {"anyOf": [_JSON_SCHEMA_TYPES[declaration.type], {"type": "null"}]}
            for name, declaration in declared.items()
        },
        "additionalProperties": False,
        "description": "Only the attributes declared in config (`attributes`), each of its type.",
    }


# How the journey checker (trouw.domain.checks.scope) names each attribute type.
CHECKER_TYPES: dict[AttributeType, str] = {
    "string": "text",
    "integer": "number",
    "number": "number",
    "boolean": "bool",
    "date": "date",
}


def checker_types(declared: Declared) -> dict[str, str]:
    """name -> the checker's type name, for the typed description of `customer.attributes`."""
    return {name: CHECKER_TYPES[declaration.type] for name, declaration in declared.items()}


def duplicate_names(declarations: Iterable[AttributeDeclaration]) -> list[str]:
    seen: set[str] = set()
    twice = []
    for declaration in declarations:
        if declaration.name in seen:
            twice.append(declaration.name)
        seen.add(declaration.name)
    return twice


def _typed(declaration: AttributeDeclaration, value: Any, *, from_text: bool) -> Any:
    """The value as its declared type (JSON-storable: a date as ISO text), or ValueError."""
    kind = declaration.type
    text = value.strip() if isinstance(value, str) and from_text else value
    if kind == "string":
        if isinstance(text, str):
            return text
    elif kind == "boolean":
        if isinstance(text, bool):
            return text
        if from_text and isinstance(text, str) and text.casefold() in _TRUE | _FALSE:
            return text.casefold() in _TRUE
    elif kind == "integer":
        if isinstance(text, int) and not isinstance(text, bool):
            return text
        if isinstance(text, float) and text.is_integer():  # JSON: 12.0 is the integer 12
            return int(text)
        if from_text and isinstance(text, str) and text.lstrip("+-").isdigit():
            return int(text)
    elif kind == "number":
        if isinstance(text, int | float | Decimal) and not isinstance(text, bool):
            return float(text)
        if from_text and isinstance(text, str):
            try:
                return float(Decimal(text.replace(",", ".")))
            except InvalidOperation:
                pass
    elif kind == "date":
        if isinstance(text, datetime):
            return text.date().isoformat()
        if isinstance(text, date):
            return text.isoformat()
        if isinstance(text, str):
            return _date_text(text, from_text=from_text)
    raise ValueError(kind)


def _date_text(text: str, *, from_text: bool) -> str:
    """An ISO date from ISO text (a datetime's date too); a CSV cell may also be dd-mm-yyyy."""
    from trouw.language.cells import CellError, parse_date

    try:
        return datetime.fromisoformat(text).date().isoformat()
    except ValueError:
        if not from_text:
            raise ValueError(f"{text!r} is not a date (YYYY-MM-DD)") from None
    try:
        return parse_date(text).isoformat()
    except CellError as exc:
        raise ValueError(str(exc)) from None


def _article(kind: str) -> str:
    return {"integer": "an integer", "date": "a date (YYYY-MM-DD)"}.get(kind, f"a {kind}")


def check_values(
    values: Mapping[str, Any], declared: Declared, *, from_text: bool = False
) -> dict[str, Any]:
    """Attribute values of declared names, as their declared type; None clears one.

    `from_text` accepts what a CSV cell holds ("120", "ja", "3,5", "24-04-1979"). Raises
    AttributeValueError naming the first attribute that is wrong.
    """
    checked: dict[str, Any] = {}
    for name, value in values.items():
        declaration = declared.get(name)
        if declaration is None:
            known = ", ".join(sorted(declared)) or "none are declared"
            raise AttributeValueError(
                name,
                f"unknown attribute {name!r} (declared in config/trouw.toml `attributes`: {known})",
            )
        if value is None or (from_text and isinstance(value, str) and not value.strip()):
            checked[name] = None
            continue
        try:
            checked[name] = _typed(declaration, value, from_text=from_text)
        except ValueError:
            kind = _article(declaration.type)
            raise AttributeValueError(
                name, f"attribute {name!r} is {kind}: {value!r} is not"
            ) from None
    return checked


def context_attributes(
    stored: Mapping[str, Any], declared: Declared, *, personal: bool
) -> dict[str, Any]:
    """Every declared attribute (None when unset, a date as a date) as journeys and templates
    see it.

    personal=False leaves the personal ones out: that copy may travel through Temporal.
    Stored values of names no longer declared are not shown.
    """
    shown = {}
    for name, declaration in declared.items():
        if declaration.personal and not personal:
            continue
        value = stored.get(name)
        if declaration.type == "date" and isinstance(value, str):
            try:
                value = date.fromisoformat(value[:10])
            except ValueError:
                pass  # stored before it was declared a date: shown as it is
        shown[name] = value
    return shown


# --- which attributes an expression reads ------------------------------------------------------

_PARSER = ImmutableSandboxedEnvironment()


def _attributes_node(node: nodes.Node) -> bool:
    """Is this node `customer.attributes` (or `customer['attributes']`)?"""
    if isinstance(node, nodes.Getattr):
        base, key = node.node, node.attr
    elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        base, key = node.node, node.arg.value
    else:
        return False
    return key == "attributes" and isinstance(base, nodes.Name) and base.name == "customer"


@lru_cache(maxsize=4096)
def attribute_reads(source: str) -> frozenset[str] | None:
    """The names an expression reads as `customer.attributes.<name>`; None when it reads them
    some other way (the whole mapping, a computed key), so that every attribute may matter."""
    try:
        tree = _PARSER.parse("{{ (" + source + ") }}")
    except TemplateSyntaxError:
        return frozenset()  # it does not parse: evaluating it reports that
    names: set[str] = set()
    named: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        inner = node.node  # type: ignore[attr-defined]
        if not _attributes_node(inner):
            continue
        if isinstance(node, nodes.Getattr):
            names.add(node.attr)
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            names.add(str(node.arg.value))
        else:
            return None
        named.add(id(inner))
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if _attributes_node(node) and id(node) not in named:
            return None  # `customer.attributes` used as a whole
    return frozenset(names)


def needs_activity(source: str, available: Iterable[str]) -> bool:
    """Does the expression read an attribute the workflow's copy does not hold (a personal one)?"""
    reads = attribute_reads(source)
    if reads is None:
        return True
    return not reads <= set(available)


def personal_reads(source: str, declared: Declared) -> list[str]:
    """The personal attributes an expression reads (all personal ones when it cannot tell)."""
    reads = attribute_reads(source)
    personal = [name for name, d in declared.items() if d.personal]
    if reads is None:
        return personal
    return [name for name in personal if name in reads]


# --- where a journey may read and write attributes ---------------------------------------------

# Places whose expression is evaluated where it can travel into the history: a personal
# attribute must not be read there. Conditions (a step's `when`, a branch's `if`) and a
# trigger's `when` are evaluated in an activity when they read one.
_TRAVELLING = {
    "for_each": "a trigger's for_each (its items travel with the run)",
    "date": "a date trigger (the date travels with the run)",
    "exit_when": "an exit rule's when (judged the moment the event arrives, in the workflow)",
    "wait_when": "a wait_for's when (judged the moment the event arrives, in the workflow)",
    "wait_until": "a wait_until date (the date travels with the run)",
    "update": "an update value (the value travels with the run)",
}


def journey_attribute_problems(journey: Any, declared: Declared) -> list[tuple[list[Any], str]]:
    """(path, message) for each attribute a journey writes without a declaration, and each
    personal attribute it reads where the value would enter a Temporal history."""
    problems: list[tuple[list[Any], str]] = []

    def personal(path: list[Any], source: str | None, place: str, label: str = "") -> None:
        for name in personal_reads(source, declared) if source else []:
            problems.append(
                (
                    path,
                    f"{label}personal attribute '{name}' cannot be read in {_TRAVELLING[place]}: "
                    "only a condition (when, if) may read it",
                )
            )

    trigger = journey.trigger
    personal(["trigger", "for_each"], trigger.for_each, "for_each")
    personal(["trigger", "date"], trigger.date, "date")
    for index, rule in enumerate(journey.settings.exit_on):
        personal(["settings", "exit_on", index, "when"], rule.when, "exit_when")
    for index, step in enumerate(journey.steps):
        label = f"step {step.id}: "
        wait_until = getattr(step, "wait_until", None)
        if wait_until is not None:
            personal(["steps", index, "wait_until", "date"], wait_until.date, "wait_until", label)
        if getattr(step, "wait_for", None) is not None:
            personal(["steps", index, "when"], getattr(step, "when", None), "wait_when", label)
        update = getattr(step, "update", None)
        if update is None:
            continue
        for name, source in update.attributes.items():
            path = ["steps", index, "update", "attributes", name]
            if name not in declared:
                known = ", ".join(sorted(declared)) or "none are declared"
                problems.append(
                    (path, f"{label}unknown attribute '{name}' (declared in config: {known})")
                )
            personal(path, source, "update", label)
    return problems
