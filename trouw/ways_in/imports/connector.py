"""The file-drop connector: imports each export dropped in a folder once, then files it in done/ or failed/."""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trouw.settings import Settings
from trouw.ways_in.imports.importer import (
    ImportFileError,
    ImportInterrupted,
    ImportReport,
    import_file,
)
from trouw.ways_in.imports.mapping import Kind, MappingError, load_mapping
from trouw.ways_in.imports.source import Source, SourceError

log = logging.getLogger("trouw.imports.connector")

# Name prefixes that say what a file holds; Dutch names as POS systems here write them.
PREFIXES: tuple[tuple[str, Kind], ...] = (
    ("customers", "customers"),
    ("klanten", "customers"),
    ("products", "products"),
    ("producten", "products"),
    ("artikelen", "products"),
    ("orders", "orders"),
    ("bestellingen", "orders"),
    ("verkopen", "orders"),
)
# Files still on their way in: uploaders write under these names and rename when complete.
_PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".filepart")
_OUR_SUFFIXES = (".report.txt", ".rejects.csv")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
DONE = "done"
FAILED = "failed"


class UnknownKindError(ValueError):
    """A dropped file whose name and header say neither customers, products nor orders."""


@dataclass(frozen=True)
class Report:
    """What became of one dropped file: where it went and, when it was read, its import report."""

    source: Path
    moved_to: Path
    outcome: str  # done | failed
    kind: Kind | None
    report_file: Path
    result: ImportReport | None = None
    error: str | None = None

    def line(self) -> str:
        if self.result is not None and self.outcome == DONE:
            r = self.result
            return (
                f"{self.source.name}: {self.kind}, {r.rows_imported:,} imported, "
                f"{r.rows_unchanged:,} unchanged, {r.rows_rejected:,} rejected -> {self.moved_to}"
            )
        return f"{self.source.name}: failed: {self.error} -> {self.moved_to}"


def parse_duration(text: str) -> float:
    """Seconds in "30s", "5m", "1h", "1h30m" or a plain number of seconds."""
    cleaned = text.strip().lower()
    total = 0.0
    position = 0
    for match in _DURATION.finditer(cleaned):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if not cleaned or position != len(cleaned) or total <= 0:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h)")
    return total


def _header_keys(path: Path) -> list[str]:
    with Source(path) as source:
        if source.columns is not None:
            return source.columns
        for record in source.records():
            keys = list(record.values)
            # An order with nested lines: the line keys (sku, qty) count as columns too.
            for value in record.values.values():
                if isinstance(value, list) and value and isinstance(value[0], dict):
                    keys.extend(value[0])
            return keys
    return []


def detect_kind(
    path: Path, *, mapping: str | None = None, mappings_path: Path | None = None
) -> Kind:
    """The kind by name prefix (orders-2026-03.csv), else by which mapping the header satisfies."""
    lowered = path.name.casefold()
    for prefix, kind in PREFIXES:
        if lowered.startswith(prefix):
            return kind
    try:
        header = _header_keys(path)
    except (SourceError, UnicodeError) as exc:
        raise UnknownKindError(f"cannot read the header: {exc}") from None
    # Orders first: an order-line header also has the sku a products header has.
    for kind in ("orders", "products", "customers"):
        try:
            candidate = load_mapping(kind, mapping, path=mappings_path)
        except MappingError:
            candidate = load_mapping(kind, None, path=mappings_path)
        if not candidate.missing(candidate.resolve(header)):
            return kind
    raise UnknownKindError(
        "the name does not start with customers, products or orders and the header "
        "matches no mapping"
    )


def _waiting(path: Path) -> bool:
    name = path.name.casefold()
    return (
        name.startswith((".", "~"))
        or name.endswith(_PARTIAL_SUFFIXES)
        or name.endswith(_OUR_SUFFIXES)
    )


def _unique(target: Path) -> Path:
    if not target.exists():
        return target
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return target.with_name(f"{target.stem}-{stamp}{target.suffix}")


def _write_report(
    path: Path, *, source: Path, outcome: str, result: ImportReport | None, error: str | None
) -> None:
    lines = [f"{source.name}: {outcome} at {datetime.now(UTC).isoformat(timespec='seconds')}"]
    if error:
        lines.append(f"error: {error}")
    if result is not None:
        lines.extend(result.summary())
        if result.reject_file is not None:
            lines.append("")
            lines.append("rejected rows (line: reason), all of them with their cells in:")
            lines.append(f"  {result.reject_file.name}")
            lines.extend(_first_rejects(result.reject_file, limit=100))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _first_rejects(path: Path, *, limit: int) -> list[str]:
    import csv

    out: list[str] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        sample = handle.readline()
        delimiter = ";" if sample.count(";") > sample.count(",") else ","
        handle.seek(0)
        reader = csv.reader(handle, delimiter=delimiter)
        next(reader, None)
        for count, row in enumerate(reader):
            if count >= limit:
                out.append(f"  ... (see {path.name})")
                break
            out.append(f"  line {row[0]}: {row[1]}")
    return out


def scan_once(
    directory: Path,
    engine: Engine,
    settings: Settings,
    *,
    mapping: str | None = None,
    mappings_path: Path | None = None,
    backfill: bool = False,
    settle_seconds: float = 10.0,
    sizes: dict[str, int] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[Report]:
    """Import every file in `directory` that has settled, oldest name first; move each away.

    A file has settled when it is older than settle_seconds, or (with `sizes`, the memory of the
    previous scan) when its size did not change since then. Files are moved only after their
    import committed, so a crash mid-file leaves it here to be imported again; that is harmless
    because imports are idempotent.
    """
    done_dir, failed_dir = directory / DONE, directory / FAILED
    work_dir = directory / ".trouw-import"
    reports: list[Report] = []
    now = time.time()
    seen: dict[str, int] = {}
    for path in sorted(p for p in directory.iterdir() if p.is_file() and not _waiting(p)):
        stat = path.stat()
        seen[path.name] = stat.st_size
        steady = sizes is not None and sizes.get(path.name) == stat.st_size
        if now - stat.st_mtime < settle_seconds and not steady:
            continue
        if should_stop is not None and should_stop():
            break
        kind: Kind | None = None
        result: ImportReport | None = None
        error: str | None = None
        work_dir.mkdir(exist_ok=True)
        rejects = work_dir / f"{path.name}.rejects.csv"
        try:
            kind = detect_kind(path, mapping=mapping, mappings_path=mappings_path)
            chosen = mapping
            if chosen is not None:
                try:
                    load_mapping(kind, chosen, path=mappings_path)
                except MappingError:
                    chosen = None  # no such mapping for this kind: its default reads it
            result = import_file(
                kind=kind,
                path=path,
                engine=engine,
                settings=settings,
                mapping=chosen,
                mappings_path=mappings_path,
                backfill=backfill,
                reject_file=rejects,
                should_stop=should_stop,
            )
            error = result.error
        except ImportInterrupted:
            log.info("stopped during %s; it is imported again on the next start", path.name)
            break
        except (sa.exc.OperationalError, sa.exc.InterfaceError):
            # The database is away: leave the file where it is and try again next round.
            log.exception("database error while importing %s; retrying next scan", path.name)
            break
        except (ImportFileError, MappingError, UnknownKindError, SourceError) as exc:
            error = str(exc)
        except Exception as exc:  # a file we cannot handle must not block the ones after it
            log.exception("unexpected error while importing %s", path.name)
            error = f"unexpected error: {exc}"
        outcome = FAILED if error else DONE
        target_dir = failed_dir if error else done_dir
        target_dir.mkdir(exist_ok=True)
        target = _unique(target_dir / path.name)
        shutil.move(str(path), target)
        if result is not None and result.reject_file is not None:
            moved_rejects = target.with_name(target.name + ".rejects.csv")
            shutil.move(str(result.reject_file), moved_rejects)
            result.reject_file = moved_rejects
            result.path = target
        report_file = target.with_name(target.name + ".report.txt")
        _write_report(report_file, source=path, outcome=outcome, result=result, error=error)
        report = Report(
            source=path,
            moved_to=target,
            outcome=outcome,
            kind=kind,
            report_file=report_file,
            result=result,
            error=error,
        )
        log.info(report.line())
        reports.append(report)
    if sizes is not None:
        sizes.clear()
        sizes.update(seen)
    return reports


def run_connector(
    directory: Path,
    engine: Engine,
    settings: Settings,
    *,
    every: float,
    stop: threading.Event,
    on_report: Callable[[Report], None] | None = None,
    **scan_options: Any,
) -> None:
    """Scan every `every` seconds on an APScheduler background thread until `stop` is set."""
    from apscheduler.schedulers.background import BackgroundScheduler

    directory.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int] = {}

    def job() -> None:
        for report in scan_once(
            directory, engine, settings, sizes=sizes, should_stop=stop.is_set, **scan_options
        ):
            if on_report is not None:
                on_report(report)

    scheduler = BackgroundScheduler(timezone=UTC)
    # One scan at a time; scans missed while a big file imports are merged into one.
    scheduler.add_job(
        job,
        "interval",
        seconds=every,
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
        id="scan",
    )
    scheduler.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        # Waits for a running scan: it stops at its next batch boundary (should_stop).
        scheduler.shutdown(wait=True)
