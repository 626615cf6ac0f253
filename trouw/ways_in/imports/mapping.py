"""Column mappings: which column of a POS or ERP export feeds which Trouw field, and how to read it."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Kind = Literal["customers", "products", "orders"]
KINDS: tuple[Kind, ...] = ("customers", "products", "orders")
DEFAULT_MAPPINGS_FILE = Path("config/import_mappings.toml")
_PACKAGED_MAPPINGS_FILE = Path(__file__).resolve().parents[3] / DEFAULT_MAPPINGS_FILE

# Our fields per kind; the first ones are required in every file of that kind.
FIELDS: dict[Kind, tuple[str, ...]] = {
    "customers": (
        "id",
        "email",
        "phone",
        "first_name",
        "last_name",
        "locale",
        "timezone",
        "birthday",
        "opt_in_email",
        "opt_in_sms",
    ),
    "products": (
        "sku",
        "name",
        "category",
        "price",
        "consumption_days",
        "warranty_months",
    ),
    "orders": (
        "order_id",
        "customer_id",
        "placed_at",
        "sku",
        "channel",
        "store",
        "name",
        "qty",
        "unit_price",
        "line_total",
        "order_name",
        "currency",
        "customer_email",
        "customer_phone",
        "customer_first_name",
        "customer_last_name",
        "lines",
    ),
}
REQUIRED: dict[Kind, tuple[str, ...]] = {
    "customers": ("id",),
    "products": ("sku",),
    "orders": ("order_id", "customer_id", "placed_at", "sku"),
}
_OPTIONS = (
    "delimiter",
    "decimal",
    "date_format",
    "encoding",
    "timezone",
    "phone_country",
    "default_channel",
    "values",
    "attributes",
)


class MappingError(ValueError):
    """A mapping that is missing or malformed; the message names the file and the key."""


def _key(column: str) -> str:
    """Headers compare without case, surrounding spaces or a stray BOM."""
    return column.strip().lstrip("\ufeff").casefold()


@dataclass(frozen=True)
class Mapping:
    """One named mapping, e.g. [orders.lightspeed]: our field -> candidate columns, plus options."""

    kind: Kind
    name: str
    columns: dict[str, tuple[str, ...]]
    delimiter: str | None = None
    decimal: Literal[",", ".", "auto"] = "auto"
    date_formats: tuple[str, ...] = ()
    encoding: str | None = None
    timezone: str | None = None
    phone_country: str | None = None
    default_channel: str | None = None
    # field -> {their value (casefolded) -> our value}: "Winkel" -> "pos", "NL" -> "nl-BE".
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    # customer attribute name -> candidate columns (customers only).
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.kind}.{self.name}"

    def resolve(self, header: Iterable[str]) -> dict[str, str]:
        """Our field -> the header column that feeds it (the first candidate present)."""
        present = {_key(column): column for column in header}
        resolved: dict[str, str] = {}
        for name, candidates in (*self.columns.items(), *self.attributes_items()):
            for candidate in candidates:
                column = present.get(_key(candidate))
                if column is not None:
                    resolved[name] = column
                    break
        return resolved

    def attributes_items(self) -> list[tuple[str, tuple[str, ...]]]:
        return [(f"attributes.{name}", columns) for name, columns in self.attributes.items()]

    def missing(self, resolved: MappingABC[str, str]) -> list[str]:
        """Required fields that no column feeds, described for an error message."""
        return [
            f"{name} (looked for {', '.join(repr(c) for c in self.columns.get(name, (name,)))})"
            for name in REQUIRED[self.kind]
            if name not in resolved
        ]

    def translate(self, name: str, value: str) -> str:
        table = self.values.get(name)
        if not table:
            return value
        return table.get(value.strip().casefold(), value)


def identity_mapping(kind: Kind) -> Mapping:
    """The built-in default: every field read from the column of the same name."""
    return Mapping(kind=kind, name="default", columns={name: (name,) for name in FIELDS[kind]})


def _candidates(where: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise MappingError(f"{where}: give a column name or a list of column names")


def _mapping_from_table(kind: Kind, name: str, table: dict[str, Any], source: Path) -> Mapping:
    where = f"{source}: [{kind}.{name}]"
    columns: dict[str, tuple[str, ...]] = {}
    options: dict[str, Any] = {}
    for key, value in table.items():
        if key in FIELDS[kind]:
            columns[key] = _candidates(f"{where} {key}", value)
        elif key in _OPTIONS:
            options[key] = value
        else:
            raise MappingError(
                f"{where}: unknown key {key!r}; fields are {', '.join(FIELDS[kind])} "
                f"and options {', '.join(_OPTIONS)}"
            )
    decimal = options.get("decimal", "auto")
    if decimal not in (",", ".", "auto"):
        raise MappingError(f'{where} decimal: "," or "." (or leave it out to guess per value)')
    delimiter = options.get("delimiter")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        raise MappingError(f'{where} delimiter: one character, e.g. ";" or "\\t"')
    date_format = options.get("date_format", ())
    formats = (date_format,) if isinstance(date_format, str) else tuple(date_format)
    values: dict[str, dict[str, str]] = {}
    for field_name, table_of_values in dict(options.get("values", {})).items():
        if field_name not in FIELDS[kind]:
            raise MappingError(f"{where} values: unknown field {field_name!r}")
        values[field_name] = {}
        for ours, theirs in dict(table_of_values).items():
            for their in _candidates(f"{where} values.{field_name}.{ours}", theirs):
                values[field_name][their.strip().casefold()] = str(ours)
    attributes: dict[str, tuple[str, ...]] = {}
    if options.get("attributes"):
        if kind != "customers":
            raise MappingError(f"{where} attributes: only customers have attributes")
        for attribute, candidates in dict(options["attributes"]).items():
            attributes[str(attribute)] = _candidates(f"{where} attributes.{attribute}", candidates)
    missing = [f for f in REQUIRED[kind] if f not in columns]
    if missing:
        raise MappingError(f"{where}: map the required field(s) {', '.join(missing)}")
    return Mapping(
        kind=kind,
        name=name,
        columns=columns,
        delimiter=delimiter,
        decimal=decimal,
        date_formats=formats,
        encoding=options.get("encoding"),
        timezone=options.get("timezone"),
        phone_country=str(options["phone_country"]) if options.get("phone_country") else None,
        default_channel=options.get("default_channel"),
        values=values,
        attributes=attributes,
    )


def mappings_file(path: Path | None = None) -> Path:
    """The mappings file: the one given, else config/import_mappings.toml here or in the repo."""
    if path is not None:
        return path
    return DEFAULT_MAPPINGS_FILE if DEFAULT_MAPPINGS_FILE.is_file() else _PACKAGED_MAPPINGS_FILE


def load_mapping(kind: Kind, name: str | None = None, *, path: Path | None = None) -> Mapping:
    """The mapping [kind.name] from the mappings file; `default` falls back to the identity."""
    name = name or "default"
    source = mappings_file(path)
    tables: dict[str, Any] = {}
    if source.is_file():
        try:
            tables = tomllib.loads(source.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise MappingError(f"{source}: {exc}") from None
    elif path is not None:
        raise MappingError(f"{source}: no such mappings file")
    table = dict(tables.get(kind, {})).get(name)
    if table is None:
        if name == "default":
            return identity_mapping(kind)
        known = ", ".join(sorted(dict(tables.get(kind, {})))) or "none"
        raise MappingError(f"{source}: no mapping [{kind}.{name}] (known for {kind}: {known})")
    return _mapping_from_table(kind, name, dict(table), source)
