"""`trouw import` and `trouw connect` as the lead wires them, run in a child process (they os._exit)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.imports.conftest import DATA

ROOT = Path(__file__).resolve().parents[2]
# The wiring trouw/commands/cli.py gets: the sub-app under `import`, connect as a command.
WIRING = """
import sys, typer
from trouw.ways_in.imports.cli import app as imports_app, connect_command
app = typer.Typer()
app.add_typer(imports_app, name="import")
app.command("connect")(connect_command)
app()
"""


def trouw(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WIRING, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TROUW_HOME": str(tmp_path / "home"), **env},
    )


def test_import_prints_a_summary_and_reimport_finds_nothing_new(tmp_path: Path) -> None:
    shutil.copy(DATA / "orders_kassa_bom.csv", tmp_path / "kassa.csv")
    first = trouw(tmp_path, "import", "orders", str(tmp_path / "kassa.csv"), "--mapping", "kassa")
    assert first.returncode == 0, first.stderr
    assert "imported   3 rows (2 orders new or updated)" in first.stdout
    second = trouw(tmp_path, "import", "orders", str(tmp_path / "kassa.csv"), "--mapping", "kassa")
    assert "imported   0 rows (0 orders new or updated)" in second.stdout
    assert "unchanged  3 rows (2 orders already there)" in second.stdout


def test_errors_are_one_line_with_exit_codes(tmp_path: Path) -> None:
    missing = trouw(tmp_path, "import", "orders", str(tmp_path / "nope.csv"))
    assert (missing.returncode, missing.stderr.strip()) == (
        1,
        f"error: {tmp_path}/nope.csv: no such file",
    )
    shutil.copy(DATA / "orders_kassa_bom.csv", tmp_path / "kassa.csv")
    unknown = trouw(tmp_path, "import", "orders", str(tmp_path / "kassa.csv"), "--mapping", "nope")
    assert unknown.returncode == 1
    assert (
        "no mapping [orders.nope] (known for orders: default, kassa, lightspeed)" in unknown.stderr
    )
    assert len(unknown.stderr.strip().splitlines()) == 1
    bad = trouw(tmp_path, "import", "orders", str(tmp_path / "kassa.csv"), TROUW_API_PORT="x")
    assert bad.returncode == 2 and bad.stderr.startswith("error: bad setting TROUW_API_PORT")
    duration = trouw(tmp_path, "connect", "--watch", str(tmp_path), "--every", "soon")
    assert duration.returncode == 1 and "not a duration: 'soon'" in duration.stderr


def test_connect_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WIRING,
            "connect",
            "--watch",
            str(inbox),
            "--every",
            "1s",
            "--settle",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TROUW_HOME": str(tmp_path / "home")},
    )
    try:
        deadline = time.monotonic() + 60
        while not inbox.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.copy(DATA / "products.csv", inbox / "products.csv")
        while not (inbox / "done" / "products.csv").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "products.csv: products, 3 imported, 0 unchanged, 0 rejected" in out
    assert out.rstrip().endswith("stopped")
