"""The file-drop connector: each dropped export imported once, filed in done/ or failed/."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

from sqlalchemy.engine import Engine

from tests.imports.conftest import DATA, counts
from trouw.settings import Settings
from trouw.ways_in.imports import import_file
from trouw.ways_in.imports.connector import detect_kind, run_connector, scan_once


def drop(folder: Path, source: str, name: str, *, age: float = 0) -> Path:
    target = folder / name
    shutil.copy(DATA / source, target)
    if age:
        moment = time.time() - age
        os.utime(target, (moment, moment))
    return target


def test_scan_imports_each_file_once_and_files_it_with_a_report(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    drop(inbox, "products.csv", "products-2026-03.csv")
    drop(inbox, "orders_broken.csv", "orders-2026-03.csv")
    drop(inbox, "orders.jsonl", "export.jsonl")  # an orders header, found by its columns
    (inbox / "notes.txt").write_text("hello\nworld\n", encoding="utf-8")
    reports = scan_once(inbox, engine, settings, settle_seconds=0)
    outcome = {r.source.name: (r.outcome, r.kind) for r in reports}
    assert outcome == {
        "export.jsonl": ("done", "orders"),
        "notes.txt": ("failed", None),
        "orders-2026-03.csv": ("done", "orders"),
        "products-2026-03.csv": ("done", "products"),
    }
    assert sorted(p.name for p in (inbox / "done").iterdir()) == [
        "export.jsonl",
        "export.jsonl.rejects.csv",
        "export.jsonl.report.txt",
        "orders-2026-03.csv",
        "orders-2026-03.csv.rejects.csv",
        "orders-2026-03.csv.report.txt",
        "products-2026-03.csv",
        "products-2026-03.csv.report.txt",
    ]
    report = (inbox / "done" / "orders-2026-03.csv.report.txt").read_text(encoding="utf-8")
    assert "rejected   8 rows" in report
    assert "line 4: placed_at (column 'placed_at'): not a date" in report
    failed = (inbox / "failed" / "notes.txt.report.txt").read_text(encoding="utf-8")
    assert "matches no mapping" in failed
    before = counts(engine)
    # A restart finds nothing new: files that were imported have left the folder.
    assert scan_once(inbox, engine, settings, settle_seconds=0) == []
    assert counts(engine) == before
    assert not [p for p in inbox.iterdir() if p.is_file()]


def test_a_file_still_being_written_waits(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    drop(inbox, "products.csv", "products.csv")
    (inbox / "orders.csv.part").write_text("order_id,customer_id\n", encoding="utf-8")
    sizes: dict[str, int] = {}
    assert scan_once(inbox, engine, settings, settle_seconds=60, sizes=sizes) == []
    assert sizes == {"products.csv": (DATA / "products.csv").stat().st_size}
    # Same size at the next scan: the writer is done.
    [report] = scan_once(inbox, engine, settings, settle_seconds=60, sizes=sizes)
    assert report.outcome == "done" and (inbox / "orders.csv.part").exists()
    drop(inbox, "products.csv", "products-old.csv", age=120)
    [report] = scan_once(inbox, engine, settings, settle_seconds=60)
    assert report.source.name == "products-old.csv"


def test_a_file_half_imported_before_a_crash_is_imported_again_harmlessly(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = drop(inbox, "orders_broken.csv", "orders.csv")
    # The process died after committing but before moving the file.
    import_file(kind="orders", path=path, engine=engine, settings=settings)
    (inbox / "orders.csv.rejects.csv").unlink()
    before = counts(engine)
    [report] = scan_once(inbox, engine, settings, settle_seconds=0)
    assert report.result is not None
    assert (report.result.rows_imported, report.result.rows_unchanged) == (0, 3)
    assert counts(engine) == before


def test_kind_from_the_header_when_the_name_says_nothing(tmp_path: Path) -> None:
    cases = {
        "a.csv": ("sku;name;price\n", "products"),
        "b.csv": ("id,email\n", "customers"),
        "c.csv": ("order_id,customer_id,placed_at,sku,qty\n", "orders"),
    }
    for name, (header, kind) in cases.items():
        (tmp_path / name).write_text(header, encoding="utf-8")
        assert detect_kind(tmp_path / name) == kind


def test_the_scheduler_picks_up_a_dropped_file_and_stops(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    stop = threading.Event()
    seen: list[str] = []
    thread = threading.Thread(
        target=run_connector,
        args=(inbox, engine, settings),
        kwargs={
            "every": 1,
            "stop": stop,
            "on_report": lambda r: seen.append(r.source.name),
            "settle_seconds": 0,
        },
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not inbox.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        drop(inbox, "products.csv", "products.csv")
        done = inbox / "done" / "products.csv"
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert done.exists()
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert seen == ["products.csv"]
    assert counts(engine)["product"] == 3
