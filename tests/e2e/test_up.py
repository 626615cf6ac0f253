"""`trouw up`: one command runs the API and, in a process of its own, the worker; SIGTERM and Ctrl-C stop both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.test_slice import PURCHASE, free_port
from trouw.domain.db.engine import get_engine, session_scope
from trouw.ways_in.api.auth import ensure_key

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TROUW = str(Path(sys.executable).parent / "trouw")


def start_up(
    tmp_path: Path, extra: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    api_port = free_port()
    env = {
        **os.environ,
        "TROUW_HOME": str(tmp_path / "home"),
        "TROUW_API_PORT": str(api_port),
        "TROUW_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
        "TROUW_TEMPORAL_PORT": str(free_port()),
        "TROUW_TEMPORAL_UI_PORT": str(free_port()),
        "TROUW_TEMPORAL_PERSIST": "false",
        "TROUW_TASK_QUEUE": "trouw-up-test",
        "TROUW_SIGNING_KEYS": '["up-key"]',
        "TROUW_JOURNEYS_DIR": str(ROOT / "journeys"),
        "TROUW_TEMPLATES_DIR": str(ROOT / "templates"),
        **(extra or {}),
    }
    env.pop("TEMPORAL_ADDRESS", None)
    process = subprocess.Popen(
        [TROUW, "up"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a Ctrl-C here reaches it alone
    )
    url = f"http://127.0.0.1:{api_port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise AssertionError("trouw up did not answer within 120 s")


def worker_processes(process: subprocess.Popen[str]) -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process(process.pid).children(recursive=True)
        if "spawn_main" in " ".join(child.cmdline())
    ]


def confirmation_sent(tmp_path: Path, url: str) -> bool:
    engine = get_engine(f"sqlite:///{tmp_path / 'home' / 'trouw.db'}")
    with session_scope(engine) as session:
        key = ensure_key(session, "up-test", ["ingest", "read"])
    headers = {"Authorization": f"Bearer {key}"}
    response = httpx.post(f"{url}/v1/events", json=PURCHASE, headers=headers, timeout=30)
    assert response.status_code == 202, response.text
    index = tmp_path / "home" / "outbox" / "index.jsonl"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if index.exists() and "bart@example.com" in index.read_text():
            return True
        time.sleep(0.25)
    return False


def stopped_cleanly(process: subprocess.Popen[str]) -> str:
    """What `trouw up` printed, once it has stopped within 90 s: cleanly."""
    out, _ = process.communicate(timeout=90)
    assert process.returncode in (0, 130), out
    assert "Traceback" not in out, out
    return out


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_up_runs_the_worker_in_its_own_process_and_stops_cleanly(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    process, url = start_up(tmp_path)
    try:
        workers = worker_processes(process)
        assert len(workers) == 1, [w.cmdline() for w in workers]
        assert confirmation_sent(tmp_path, url)
        server = [
            c
            for c in psutil.Process(process.pid).children(recursive=True)
            if "python" not in c.name()
        ]
        if stop_signal == signal.SIGINT:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the group
        else:
            process.send_signal(signal.SIGTERM)  # a service manager signals the main process
        stopped_cleanly(process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    gone, alive = psutil.wait_procs([*workers, *server], timeout=10)
    assert not alive, [p.pid for p in alive]


def test_up_starts_a_fresh_worker_process_when_its_worker_recycles(tmp_path: Path) -> None:
    # The mark below any worker's RSS: each worker child drains after 5 s and exits to be
    # replaced; purchases are still confirmed, and a stop still stops everything.
    recycle = {
        "TROUW_WORKER_RECYCLE_RSS_MIB": "1",
        "TROUW_WORKER_RECYCLE_CHECK_SECONDS": "1",
        "TROUW_WORKER_RECYCLE_MIN_SECONDS": "5",
    }
    process, url = start_up(tmp_path, recycle)
    try:
        [first] = worker_processes(process)
        first.wait(timeout=120)  # it recycles: drains and exits
        deadline = time.monotonic() + 120
        while not (fresh := worker_processes(process)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert fresh and fresh[0].pid != first.pid
        assert confirmation_sent(tmp_path, url)  # with workers recycling all along
        process.send_signal(signal.SIGTERM)
        out = stopped_cleanly(process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert "starting a fresh worker process (recycle 1)" in out, out
    assert "is above worker_recycle_rss_mib 1: draining" in out, out
