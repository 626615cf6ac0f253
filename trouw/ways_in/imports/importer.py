"""Imports one export file of customers, products or order lines through the one ingest path."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from trouw.domain.consent import current_consent
from trouw.domain.db.models import Customer, InboundEvent, Order, Product
from trouw.domain.ingest import (
    CustomerIn,
    EventIn,
    IngestError,
    LineIn,
    ProductIn,
    ingest_event,
    profile_changes,
    upsert_customer,
    upsert_product,
)
from trouw.domain.loyalty.ledger import take_derived
from trouw.language.attributes import AttributeValueError, check_values, declared_attributes
from trouw.language.cells import (
    CellError,
    blank,
    normalise_phone,
    parse_bool,
    parse_date,
    parse_datetime,
    parse_decimal,
    parse_int,
)
from trouw.settings import Settings
from trouw.ways_in.imports.mapping import REQUIRED, Kind, Mapping, load_mapping
from trouw.ways_in.imports.source import Source, SourceError, SourceRecord

BATCH_ROWS = 500
# Orders older than this that are imported without --backfill start journeys: say so.
OLD_ORDER_DAYS = 30
Progress = Callable[[int, int], None]


class ImportFileError(ValueError):
    """The file cannot be imported at all (a required column is missing, say)."""


class ImportInterrupted(Exception):
    """Stopped between batches on request; what was committed stays, a re-import finishes it."""


@dataclass
class ImportReport:
    """What one import did, in rows of the file and in records (customers, products, orders)."""

    kind: Kind
    path: Path
    mapping: str
    backfill: bool = False
    rows_read: int = 0
    rows_imported: int = 0
    rows_unchanged: int = 0
    rows_rejected: int = 0
    records_new: int = 0
    records_unchanged: int = 0
    records_rejected: int = 0
    old_orders_started: int = 0
    seconds: float = 0.0
    reject_file: Path | None = None
    error: str | None = None
    source_format: str = ""
    encoding: str = ""

    @property
    def rate(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> list[str]:
        noun = {"customers": "customers", "products": "products", "orders": "orders"}[self.kind]
        lines = [
            f"{self.path.name}: {self.rows_read:,} rows read in {self.seconds:.1f} s "
            f"({self.rate:,.0f} rows/s; {self.source_format}, {self.encoding}, mapping {self.mapping})",
            f"  imported   {self.rows_imported:,} rows ({self.records_new:,} {noun} new or updated)",
            f"  unchanged  {self.rows_unchanged:,} rows ({self.records_unchanged:,} {noun} already there)",
            f"  rejected   {self.rows_rejected:,} rows"
            + (f" -> {self.reject_file}" if self.reject_file else ""),
        ]
        if self.backfill and self.kind == "orders":
            lines.append("  backfill: history stored, no journeys started")
        if self.old_orders_started:
            lines.append(
                f"  note: {self.old_orders_started:,} order(s) older than {OLD_ORDER_DAYS} days "
                "will start journeys; use --backfill to load history without them"
            )
        if self.error:
            lines.append(f"  stopped: {self.error}")
        return lines


class RejectWriter:
    """The reject file: `_line`, `_reason`, then the row as it was, so it can be fixed and re-imported."""

    def __init__(self, path: Path, *, columns: list[str] | None, delimiter: str) -> None:
        self.path = path
        self.columns = columns
        self.delimiter = delimiter
        self.count = 0
        self._handle: TextIO | None = None
        self._writer: Any = None
        # A reject file always describes the latest run: an old one would mislead.
        path.unlink(missing_ok=True)

    def write(self, record: SourceRecord, reason: str) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # utf-8-sig: Excel opens it with the accents intact; the importer reads the BOM.
            self._handle = self.path.open("w", encoding="utf-8-sig", newline="")
            self._writer = csv.writer(self._handle, delimiter=self.delimiter)
            header = self.columns if self.columns is not None else ["record"]
            self._writer.writerow(["_line", "_reason", *header])
        raw = record.raw if isinstance(record.raw, list) else [record.raw]
        self._writer.writerow([record.line, reason, *raw])
        self.count += 1

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _validation_reason(exc: ValidationError, columns: dict[str, str]) -> str:
    error = exc.errors()[0]
    error["msg"] = str(error["msg"]).removeprefix("Value error, ")
    location = [str(part) for part in error.get("loc", ())]
    name = location[-1] if location else ""
    for ours in (name, f"customer_{name}"):
        if ours in columns:
            return f"{ours} (column {columns[ours]!r}): {error['msg']}"
    where = ".".join(location)
    return f"{where}: {error['msg']}" if where else str(error["msg"])


@dataclass
class _Row:
    record: SourceRecord
    fields: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None


class _Importer:
    """Reads records, hands them to the kind's handler, commits every BATCH_ROWS rows."""

    def __init__(
        self,
        *,
        kind: Kind,
        engine: Engine,
        settings: Settings,
        mapping: Mapping,
        report: ImportReport,
        rejects: RejectWriter,
        backfill: bool,
        batch_rows: int,
        now: datetime,
    ) -> None:
        self.kind = kind
        self.engine = engine
        self.mapping = mapping
        self.report = report
        self.rejects = rejects
        self.backfill = backfill
        self.batch_rows = batch_rows
        self.now = now
        self.zone = mapping.timezone or settings.default_timezone
        self.attributes = declared_attributes(settings)
        self.session = Session(engine, expire_on_commit=False)
        self.pending_rows = 0
        self._resolved: dict[tuple[str, ...], dict[str, str]] = {}
        self.order_rows: list[_Row] = []
        self.order_batch: list[list[_Row]] = []
        self.known_orders: dict[str, str] = {}
        self.known_events: dict[str, datetime] = {}
        self.known_customers: set[str] = set()
        self.cached: list[Any] = []
        self.backfilled: list[int | None] = []

    # -- reading -------------------------------------------------------------------------------
    def columns_for(self, keys: tuple[str, ...]) -> dict[str, str]:
        resolved = self._resolved.get(keys)
        if resolved is None:
            resolved = self._resolved[keys] = self.mapping.resolve(keys)
        return resolved

    def rows(self, record: SourceRecord) -> Iterator[_Row]:
        """The rows of a record; a JSON order with a `lines` list is one row per line."""
        if record.problem:
            yield _Row(record, problem=record.problem)
            return
        columns = self.columns_for(tuple(record.values))
        lines_column = columns.get("lines")
        nested = record.values.get(lines_column) if lines_column else None
        if self.kind == "orders" and isinstance(nested, list):
            outer = {k: v for k, v in record.values.items() if k != lines_column}
            for line in nested:
                values = {**outer, **line} if isinstance(line, dict) else outer
                yield self.parse(SourceRecord(record.line, values, record.raw))
            return
        yield self.parse(record)

    def parse(self, record: SourceRecord) -> _Row:
        """Read every mapped cell; the first bad one is the row's problem, the rest still read
        (an order line with a bad price must still be grouped with its order)."""
        columns = self.columns_for(tuple(record.values))
        fields: dict[str, Any] = {"_columns": columns}
        problem: str | None = None
        for name, column in columns.items():
            value = record.values.get(column)
            if blank(value) or name == "lines":
                continue
            if isinstance(value, str):
                value = self.mapping.translate(name, value.strip())
            try:
                fields[name] = self.cell(name, value)
            except CellError as exc:
                problem = problem or f"{name} (column {column!r}): {exc}"
        empty = [name for name in REQUIRED[self.kind] if name not in fields]
        if empty and problem is None:
            missing = [name for name in empty if name not in columns]
            problem = f"missing {', '.join(missing)}" if missing else f"empty {', '.join(empty)}"
        return _Row(record, fields=fields, problem=problem)

    def cell(self, name: str, value: Any) -> Any:
        decimal = self.mapping.decimal
        if name in ("price", "unit_price", "line_total"):
            return parse_decimal(value, decimal=decimal)
        if name in ("qty", "consumption_days", "warranty_months"):
            return parse_int(value, decimal=decimal)
        if name == "placed_at":
            return parse_datetime(value, formats=self.mapping.date_formats, zone=self.zone)
        if name == "birthday":
            return parse_date(value, formats=self.mapping.date_formats)
        if name in ("opt_in_email", "opt_in_sms"):
            return parse_bool(value)
        if name in ("phone", "customer_phone"):
            return normalise_phone(value, country=self.mapping.phone_country)
        if isinstance(value, dict | list):
            raise CellError("a single value is needed here, not a list or object")
        return str(value).strip()

    # -- batching ------------------------------------------------------------------------------
    def done(self, rows: int) -> bool:
        """Count rows handled; commit when a batch is full. True when it committed."""
        self.pending_rows += rows
        if self.pending_rows < self.batch_rows:
            return False
        self.commit()
        return True

    def commit(self) -> None:
        if self.backfilled:
            self.session.exec(
                update(InboundEvent)
                .where(col(InboundEvent.id).in_(self.backfilled))
                # Never signalled, so never answered by match_journeys: nothing of theirs is
                # starting (trouw.domain.interest).
                .values(relayed_at=self.now, matched_at=self.now)
            )
            self.backfilled = []
        self.session.commit()
        self.session.close()
        # A fresh session per batch: the identity map never grows with the file.
        self.session = Session(self.engine, expire_on_commit=False)
        self.pending_rows = 0
        self.cached = []

    def close(self) -> None:
        self.session.close()

    def reject(self, rows: list[_Row], reason: str | None = None) -> None:
        for row in rows:
            self.rejects.write(row.record, row.problem or reason or "rejected")
        self.report.rows_rejected += len(rows)
        self.report.records_rejected += 1

    def counted(self, rows: int, *, new: bool) -> None:
        if new:
            self.report.rows_imported += rows
            self.report.records_new += 1
        else:
            self.report.rows_unchanged += rows
            self.report.records_unchanged += 1

    # -- customers -----------------------------------------------------------------------------
    def customer(self, row: _Row) -> None:
        f = row.fields
        data: dict[str, Any] = {"id": f["id"]}
        for name in ("email", "phone", "first_name", "last_name", "locale", "timezone", "birthday"):
            if name in f:
                data[name] = f[name]
        opt_in = {ch: f[f"opt_in_{ch}"] for ch in ("email", "sms") if f"opt_in_{ch}" in f}
        attributes = {k.split(".", 1)[1]: v for k, v in f.items() if k.startswith("attributes.")}
        if attributes:
            try:
                data["attributes"] = check_values(attributes, self.attributes, from_text=True)
            except AttributeValueError as exc:
                raise _Rejected(str(exc)) from None
        try:
            incoming = CustomerIn(**data, opt_in=opt_in or None)
        except ValidationError as exc:
            raise _Rejected(_validation_reason(exc, f["_columns"])) from None
        existing = self.session.get(Customer, incoming.id)
        changes = profile_changes(existing, incoming)
        if existing is not None and opt_in:
            consent = current_consent(self.session, incoming.id)
            opt_in = {ch: v for ch, v in opt_in.items() if consent.promotional(ch) != v}
        elif opt_in:
            opt_in = {ch: v for ch, v in opt_in.items() if v}
        if existing is not None and not changes and not opt_in:
            self.counted(1, new=False)
            return
        with self.session.begin_nested():
            upsert_customer(
                self.session,
                incoming.model_copy(update={"opt_in": opt_in or None}),
                at=self.now,
                source="import",
            )
        self.counted(1, new=True)

    # -- products ------------------------------------------------------------------------------
    def product(self, row: _Row) -> None:
        f = row.fields
        existing = self.session.get(Product, f["sku"])
        # Columns the file does not have keep their value: a till export knows no refill days.
        merged: dict[str, Any] = {}
        if existing is not None:
            merged = {
                name: getattr(existing, name)
                for name in ProductIn.model_fields
                if getattr(existing, name) is not None
            }
        merged.update({k: v for k, v in f.items() if k in ProductIn.model_fields})
        if "name" not in merged:
            raise _Rejected(f"new product {f['sku']!r} needs a name")
        try:
            incoming = ProductIn(**merged)
        except ValidationError as exc:
            raise _Rejected(_validation_reason(exc, f["_columns"])) from None
        if existing is not None and all(
            getattr(existing, name) == value for name, value in incoming.model_dump().items()
        ):
            self.counted(1, new=False)
            return
        with self.session.begin_nested():
            upsert_product(self.session, incoming)
        self.counted(1, new=True)

    # -- orders --------------------------------------------------------------------------------
    def order_row(self, row: _Row) -> bool:
        """Collect the rows of one order; at each order boundary, process a full batch of orders."""
        order_id = row.fields.get("order_id")
        current = self.order_rows[0] if self.order_rows else None
        committed = False
        if current is not None and (order_id is None or current.fields["order_id"] != order_id):
            self.end_order()
            if self.pending_rows >= self.batch_rows:
                self.process_orders()
                committed = True
        self.pending_rows += 1
        if order_id is None:
            # Rejected in turn with the batch, so the reject file stays in line order.
            self.order_batch.append([row])
        else:
            self.order_rows.append(row)
        return committed

    def end_order(self) -> None:
        if self.order_rows:
            self.order_batch.append(self.order_rows)
            self.order_rows = []

    def flush_order(self) -> bool:
        """End the last order and process what is buffered (the end of the file)."""
        self.end_order()
        if not self.order_batch:
            return False
        self.process_orders()
        return True

    def process_orders(self) -> None:
        """Ingest a batch of whole orders with a few IN queries up front, then commit."""
        batch, self.order_batch = self.order_batch, []
        self.prefetch(batch)
        for rows in batch:
            if "order_id" not in rows[0].fields:
                self.reject(rows)
                self.report.records_rejected -= 1  # a loose bad row is not an order
                continue
            try:
                self.order(rows)
            except _Rejected as exc:
                self.reject(rows, exc.reason)
            except (IngestError, ValidationError) as exc:
                self.reject(rows, str(exc).splitlines()[0])
        self.commit()

    def prefetch(self, batch: list[list[_Row]]) -> None:
        """Load the batch's known orders, customers and products in one query each.

        The objects land in the session's identity map, so the per-order lookups (ours and
        ingest_event's) are answered from memory; only truly new rows still cost a query.
        """
        order_ids = {rows[0].fields["order_id"] for rows in batch if "order_id" in rows[0].fields}
        customer_ids = {
            r.fields["customer_id"] for rows in batch for r in rows if "customer_id" in r.fields
        }
        skus = {r.fields["sku"] for rows in batch for r in rows if "sku" in r.fields}
        orders = self.session.exec(select(Order).where(col(Order.id).in_(order_ids))).all()
        self.known_orders = {o.id: o.customer_id for o in orders}
        event_ids = [f"import:orders:{order_id}" for order_id in self.known_orders]
        self.known_events = (
            {
                e.source_id: e.received_at
                for e in self.session.exec(
                    select(InboundEvent).where(col(InboundEvent.source_id).in_(event_ids))
                ).all()
            }
            if event_ids
            else {}
        )
        customers = self.session.exec(
            select(Customer).where(col(Customer.id).in_(customer_ids))
        ).all()
        products = self.session.exec(select(Product).where(col(Product.sku).in_(skus))).all()
        # Strong references for the batch: the identity map alone holds objects weakly.
        self.cached = [*customers, *products]
        self.known_customers = {c.id for c in customers}

    def order(self, rows: list[_Row]) -> None:
        first = rows[0].fields
        order_id: str = first["order_id"]
        bad = [row for row in rows if row.problem]
        if bad:
            raise _Rejected(f"order {order_id} has a rejected row on line {bad[0].record.line}")
        for row in rows[1:]:
            if row.fields["customer_id"] != first["customer_id"]:
                row.problem = (
                    f"order {order_id}: customer {row.fields['customer_id']!r} differs from "
                    f"{first['customer_id']!r} on line {rows[0].record.line}"
                )
                raise _Rejected(f"order {order_id} has rows of two customers")
        channel = first.get("channel") or self.mapping.default_channel
        if channel not in ("pos", "web"):
            raise _Rejected(
                f"channel {channel!r} is not pos or web (map the column's values with "
                "values.channel, or set default_channel)"
                if channel
                else "no channel: map a channel column or set default_channel in the mapping"
            )
        event_id = f"import:orders:{order_id}"
        known_customer = self.known_orders.get(order_id)
        if known_customer is not None:
            if known_customer != first["customer_id"]:
                raise _Rejected(f"order {order_id} already exists for another customer")
            if self.known_events.get(event_id) == self.now:
                raise _Rejected(
                    f"duplicate: order {order_id} was already imported earlier in this file "
                    "(the rows of one order must be adjacent)"
                )
            self.counted(len(rows), new=False)
            return
        lines = []
        for row in rows:
            f = row.fields
            price = f.get("unit_price")
            qty = f.get("qty", 1)
            if price is None and "line_total" in f and qty:
                price = (f["line_total"] / qty).quantize(Decimal("0.01"))
            if price is None and self.session.get(Product, f["sku"]) is None:
                row.problem = (
                    f"unknown product {f['sku']!r} and no unit price: import the products "
                    "first, or give the line's price"
                )
                raise _Rejected(f"order {order_id} has a line that cannot be priced")
            try:
                lines.append(LineIn(sku=f["sku"], qty=qty, unit_price=price, name=f.get("name")))
            except ValidationError as exc:
                row.problem = _validation_reason(exc, f["_columns"])
                raise _Rejected(f"order {order_id} has a rejected row") from None
        placed_at: datetime = first["placed_at"]
        try:
            event = EventIn(
                id=event_id,
                type="purchase",
                customer=first["customer_id"],
                at=placed_at,
                order=order_id,
                order_name=first.get("order_name") or None,
                currency=(first.get("currency") or "").upper() or None,
                channel=channel,
                store=first.get("store"),
                lines=lines,
                source="import",
            )
        except ValidationError as exc:
            rows[0].problem = _validation_reason(exc, first["_columns"])
            raise _Rejected(f"order {order_id}: rejected on line {rows[0].record.line}") from None
        profile = self.profile(rows)
        with self.session.begin_nested():
            if profile is not None or event.customer not in self.known_customers:
                # What ingest_event would do with event.profile, done here so the customer
                # object stays in this batch's cache: one lookup instead of two per new customer.
                customer = upsert_customer(
                    self.session,
                    profile or CustomerIn(id=event.customer),
                    at=placed_at,
                    source="import",
                    announce=not self.backfill,
                )
                self.cached.append(customer)
            stored, new = ingest_event(self.session, event, now=self.now)
        derived = take_derived(self.session)
        if new and self.backfill:
            # Stored as already handed off (set before this batch commits, in its transaction):
            # the relay never starts journeys for history, nor for the points it earned.
            self.backfilled.append(stored.id)
            self.backfilled.extend(row.id for row in derived)
        self.known_orders[order_id] = first["customer_id"]
        self.known_events[event_id] = stored.received_at
        self.known_customers.add(first["customer_id"])
        self.counted(len(rows), new=new)
        if new and not self.backfill and placed_at < self.now - timedelta(days=OLD_ORDER_DAYS):
            self.report.old_orders_started += 1

    def profile(self, rows: list[_Row]) -> CustomerIn | None:
        """The customer's details from the order rows, only when they add or change something."""
        first = rows[0].fields
        data = {
            name: first[f"customer_{name}"]
            for name in ("email", "phone", "first_name", "last_name")
            if f"customer_{name}" in first
        }
        if not data:
            return None
        try:
            incoming = CustomerIn(id=first["customer_id"], **data)
        except ValidationError as exc:
            rows[0].problem = _validation_reason(exc, first["_columns"])
            raise _Rejected(
                f"order {first['order_id']}: customer details rejected on line {rows[0].record.line}"
            ) from None
        if incoming.id not in self.known_customers:
            return incoming
        existing = self.session.get(Customer, incoming.id)
        if existing is not None and not profile_changes(existing, incoming):
            return None
        return incoming

    # -- driving -------------------------------------------------------------------------------
    def handle(self, row: _Row) -> bool:
        """Handle one row; True when a batch was committed."""
        if self.kind == "orders":
            return self.order_row(row)
        if row.problem:
            self.reject([row])
            return self.done(1)
        try:
            if self.kind == "customers":
                self.customer(row)
            else:
                self.product(row)
        except _Rejected as exc:
            self.reject([row], exc.reason)
        except IngestError as exc:
            self.reject([row], str(exc))
        return self.done(1)


def default_reject_file(path: Path) -> Path:
    return path.with_name(path.name + ".rejects.csv")


def import_file(
    *,
    kind: Kind,
    path: Path,
    engine: Engine,
    settings: Settings,
    mapping: Mapping | str | None = None,
    mappings_path: Path | None = None,
    backfill: bool = False,
    reject_file: Path | None = None,
    batch_rows: int = BATCH_ROWS,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    now: datetime | None = None,
) -> ImportReport:
    """Import one file, streaming; bad rows go to the reject file, the rest is committed in batches.

    Raises ImportFileError when the file cannot be read at all, ImportInterrupted when
    should_stop() turned true (checked after each committed batch).
    """
    started = time.perf_counter()
    if not isinstance(mapping, Mapping):
        mapping = load_mapping(kind, mapping, path=mappings_path)
    if not path.is_file():
        raise ImportFileError(f"{path}: no such file")
    declared = declared_attributes(settings)
    undeclared = sorted(set(mapping.attributes) - set(declared))
    if undeclared:
        raise ImportFileError(
            f"mapping {mapping.label}: attribute {undeclared[0]!r} is not declared "
            f"(config/trouw.toml `attributes`: {', '.join(sorted(declared)) or 'none'})"
        )
    # One instant per run: it is every new event's received_at, which is how a repeat of an
    # order already flushed by this same run is told apart from one imported before.
    now = now or datetime.now(UTC)
    report = ImportReport(kind=kind, path=path, mapping=mapping.label, backfill=backfill)
    try:
        source = Source(path, encoding=mapping.encoding, delimiter=mapping.delimiter)
    except (SourceError, LookupError, UnicodeError) as exc:
        raise ImportFileError(str(exc)) from None
    with source:
        report.source_format = source.format
        report.encoding = source.encoding
        if source.columns is not None:
            missing = mapping.missing(mapping.resolve(source.columns))
            if missing:
                raise ImportFileError(
                    f"{path.name}: mapping {mapping.label} needs column(s) for "
                    f"{'; '.join(missing)}; the header has {', '.join(source.columns)}"
                )
        rejects = RejectWriter(
            reject_file or default_reject_file(path),
            columns=source.columns,
            delimiter=source.delimiter or ",",
        )
        importer = _Importer(
            kind=kind,
            engine=engine,
            settings=settings,
            mapping=mapping,
            report=report,
            rejects=rejects,
            backfill=backfill,
            batch_rows=batch_rows,
            now=now,
        )
        try:
            try:
                for record in source.records():
                    for row in importer.rows(record):
                        report.rows_read += 1
                        if importer.handle(row):
                            if progress is not None:
                                progress(source.bytes_read, source.size)
                            if should_stop is not None and should_stop():
                                raise ImportInterrupted(f"{path.name}: stopped on request")
            except SourceError as exc:
                report.error = str(exc)
            importer.flush_order()
            importer.commit()
        finally:
            importer.close()
            rejects.close()
        if progress is not None:
            progress(source.size, source.size)
    report.reject_file = rejects.path if rejects.count else None
    report.seconds = time.perf_counter() - started
    return report
