"""The `trouw import customers|products|orders FILE` commands and `trouw connect --watch DIR`."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from trouw.commands.terminal import console, engine_or_fail, err, fail, settings_or_fail
from trouw.ways_in.imports.importer import Progress
from trouw.ways_in.imports.mapping import Kind

app = typer.Typer(
    help="Import customers, products or order lines from a POS or ERP export (CSV or JSON).",
    no_args_is_help=True,
)

MAPPING = typer.Option(
    None, "--mapping", help="Mapping NAME from config/import_mappings.toml (default: default)."
)
MAPPINGS_FILE = typer.Option(
    None, "--mappings", help="Another mappings file instead of config/import_mappings.toml."
)
REJECT_FILE = typer.Option(
    None, "--reject-file", help="Where rejected rows go (default: FILE.rejects.csv)."
)


@contextmanager
def _progress_bar(label: str) -> Iterator[Progress | None]:
    """A bar of bytes read on a terminal; nothing when output goes to a file or a pipe."""
    if not err.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as Bar

    with Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def run_import(
    kind: Kind,
    file: Path,
    *,
    mapping: str | None,
    mappings: Path | None,
    backfill: bool,
    reject_file: Path | None,
) -> None:
    from trouw.ways_in.imports.importer import ImportFileError, import_file
    from trouw.ways_in.imports.mapping import MappingError

    settings = settings_or_fail()
    if not file.is_file():
        fail(f"{file}: no such file")
    engine = engine_or_fail(settings)
    try:
        with _progress_bar(f"importing {file.name}") as progress:
            report = import_file(
                kind=kind,
                path=file,
                engine=engine,
                settings=settings,
                mapping=mapping,
                mappings_path=mappings,
                backfill=backfill,
                reject_file=reject_file,
                progress=progress,
            )
    except (ImportFileError, MappingError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print(
            "interrupted: the batches committed so far stay; run the same import again to "
            "finish (it skips what is there)",
            highlight=False,
        )
        raise typer.Exit(130) from None
    for line in report.summary():
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    if report.error:
        fail(report.error)


@app.command("customers")
def import_customers(
    file: Path = typer.Argument(..., help="A CSV or JSON (array or lines) export."),
    mapping: str | None = MAPPING,
    mappings: Path | None = MAPPINGS_FILE,
    backfill: bool = typer.Option(
        False, "--backfill", help="No effect: customers start no journeys."
    ),
    reject_file: Path | None = REJECT_FILE,
) -> None:
    """Create or update customers (and their opt-ins); never starts a journey."""
    run_import(
        "customers",
        file,
        mapping=mapping,
        mappings=mappings,
        backfill=backfill,
        reject_file=reject_file,
    )


@app.command("products")
def import_products(
    file: Path = typer.Argument(..., help="A CSV or JSON (array or lines) export."),
    mapping: str | None = MAPPING,
    mappings: Path | None = MAPPINGS_FILE,
    backfill: bool = typer.Option(
        False, "--backfill", help="No effect: products start no journeys."
    ),
    reject_file: Path | None = REJECT_FILE,
) -> None:
    """Create or update catalogue items; columns the file lacks keep their value."""
    run_import(
        "products",
        file,
        mapping=mapping,
        mappings=mappings,
        backfill=backfill,
        reject_file=reject_file,
    )


@app.command("orders")
def import_orders(
    file: Path = typer.Argument(..., help="One row per order line; rows of one order adjacent."),
    mapping: str | None = MAPPING,
    mappings: Path | None = MAPPINGS_FILE,
    backfill: bool = typer.Option(
        False, "--backfill", help="Load history: orders are stored but start no journeys."
    ),
    reject_file: Path | None = REJECT_FILE,
) -> None:
    """Import purchases; each new order starts its journeys once the relay runs (not with --backfill)."""
    run_import(
        "orders",
        file,
        mapping=mapping,
        mappings=mappings,
        backfill=backfill,
        reject_file=reject_file,
    )


def connect_command(
    watch: Path = typer.Option(..., "--watch", help="The folder exports are dropped in."),
    every: str = typer.Option("5m", "--every", help="Scan interval: 30s, 5m, 1h."),
    settle: str = typer.Option(
        "10s", "--settle", help="A file is picked up once this old, or once its size held a scan."
    ),
    mapping: str | None = MAPPING,
    mappings: Path | None = MAPPINGS_FILE,
    backfill: bool = typer.Option(False, "--backfill", help="Orders start no journeys."),
) -> None:
    """Watch a folder: import every new export once, file it in done/ or failed/ with a report."""
    import logging

    from trouw.ways_in.imports.connector import Report, parse_duration, run_connector

    try:
        interval = parse_duration(every)
        settle_seconds = parse_duration(settle) if settle.strip() not in ("0", "0s") else 0.0
    except ValueError as exc:
        fail(str(exc))
    settings = settings_or_fail()
    engine = engine_or_fail(settings)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    def show(report: Report) -> None:
        console.print(report.line(), highlight=False, soft_wrap=True, markup=False)

    console.print(
        f"Watching {watch} every {every} (done/ and failed/ inside it). Stop with Ctrl-C.",
        highlight=False,
    )
    run_connector(
        watch,
        engine,
        settings,
        every=interval,
        stop=stop,
        on_report=show,
        mapping=mapping,
        mappings_path=mappings,
        backfill=backfill,
        settle_seconds=settle_seconds,
    )
    console.print("stopped", highlight=False)
