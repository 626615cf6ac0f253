"""Where `trouw simulate`'s CPU goes: py-spy on the simulator, the test server's CPU from /proc.

Run: .venv/bin/python bench/simulate_profile.py [--customers 30] [--rate 100] [--keep DIR]
Needs py-spy in the virtualenv (`.venv/bin/pip install py-spy`; ptrace must be allowed).
Prints a report; docs/performance.md ("Simulation speed") has the results. Not a test.

The command is the one a marketer types, in one process (`--processes 1`), on
`journeys_bench.py`'s scenario, started under `py-spy record --format raw` (folded stacks of
every thread, idle samples left out, so a sample is CPU). The test server's CPU is read from
/proc/PID/stat of every `temporal-test-server` the command starts, just before it ends. The
Python samples are put into buckets by the frames they pass through (first match, innermost
first), so each sample counts once.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from journeys_bench import write  # noqa: E402

# Innermost match wins: a frame's file or function naming what the CPU did.
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("Jinja2 rendering", ("jinja2/", "trouw/domain/render")),
    ("MJML", ("mjml",)),
    ("outbox MIME message", ("email/", "trouw/providers/outbox")),
    ("SQLAlchemy / SQLModel", ("sqlalchemy/", "sqlmodel/")),
    ("pydantic (de)serialisation", ("pydantic/", "pydantic_core")),
    ("Temporal SDK (activations, activities, converter)", ("temporalio/",)),
    ("imports", ("<frozen importlib", "importlib/")),
    (
        "journey check (validate, compile templates)",
        ("trouw/domain/checks/validate", "scenario_check"),
    ),
    ("asyncio and threads", ("asyncio/", "threading.py", "concurrent/")),
]


# Leaf frames where a thread waits (py-spy's idle detection misses these): not CPU.
WAITING = ("thread.py:81)", "EpollSelector.select", "threading.py", "queue.py")


PER_CUSTOMER = ("_simulate_customer", "temporalio/", "activities/", "workflows/")


def bucket(stack: str) -> str | None:
    frames = stack.split(";")
    if any(needle in frames[-1] for needle in WAITING):
        return None
    for frame in reversed(frames):
        for name, needles in BUCKETS:
            if any(needle in frame for needle in needles):
                return name
    return "other (trouw, workflows, activities' own code)"


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a live process (and its reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # utime, stime, cutime, cstime: fields 14-17 of stat, 12-15 after the name.
    return sum(int(value) for value in fields[11:15]) / ticks


def watch(root: int, seen: dict[tuple[str, int], float], stop: threading.Event) -> None:
    """The latest CPU reading of every test server and simulator process below `root`."""
    while not stop.is_set():
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                command = (entry / "cmdline").read_bytes()
                if b"temporal-test-server" in command:
                    kind = "test server"
                elif b"trouw.commands.cli" in command and b"py-spy" not in command:
                    kind = "simulator"
                else:
                    continue
                if not _descends(int(entry.name), root):
                    continue
                seen[(kind, int(entry.name))] = cpu_of(int(entry.name))
            except OSError:
                continue
        stop.wait(0.2)


def _descends(pid: int, root: int) -> bool:
    while pid > 1:
        if pid == root:
            return True
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        pid = int(stat[1])
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=30)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--keep", type=Path, default=None, help="folder for the raw profile")
    parser.add_argument(
        "--all-threads",
        action="store_true",
        help="sample every thread py-spy finds running, not only the one holding the GIL",
    )
    parser.add_argument(
        "--py-spy", type=Path, default=Path(sys.executable).parent / "py-spy", help="its binary"
    )
    opts = parser.parse_args()
    work = opts.keep or Path(tempfile.mkdtemp(prefix="trouw-simulate-profile-"))
    work.mkdir(parents=True, exist_ok=True)
    scenario = write(work / "scenario.yaml", opts.customers)
    raw = work / "profile.txt"
    spy = opts.py_spy
    args = [
        str(spy),
        "record",
        "--format",
        "raw",
        "--rate",
        str(opts.rate),
        "--threads",
        *([] if opts.all_threads else ["--gil"]),
        "--output",
        str(raw),
        "--",
        sys.executable,
        "-m",
        "trouw.commands.cli",
        "simulate",
        str(scenario),
        "--json",
        "--processes",
        "1",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TROUW_")}
    readings: dict[tuple[str, int], float] = {}
    stop = threading.Event()
    before = os.times()
    started = time.perf_counter()
    process = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    watcher = threading.Thread(target=watch, args=(process.pid, readings, stop))
    watcher.start()
    _out, err = process.communicate()
    wall = time.perf_counter() - started
    stop.set()
    watcher.join()
    after = os.times()
    if process.returncode != 0:
        raise SystemExit(f"simulate failed: {err.decode()[-2000:]}")
    total_cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    samples: collections.Counter[str] = collections.Counter()
    phases: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        name = bucket(stack)
        if name is None:
            continue
        # Customers' work: the simulator's driving of a customer, the worker (its coroutines
        # on the event loop, its workflow and activity threads); the rest of the main thread
        # is start-up (imports, checks), the collection and the report.
        customer = any(needle in stack for needle in PER_CUSTOMER) or (
            "MainThread" not in stack.split(";")[0]
        )
        phase = "customers" if customer else "start-up and finish"
        samples[f"{phase}: {name}"] += int(count)
        phases[phase] += int(count)
    total = sum(samples.values())
    server_cpu = sum(cpu for (kind, _), cpu in readings.items() if kind == "test server")
    python_cpu = sum(cpu for (kind, _), cpu in readings.items() if kind == "simulator")
    load = os.getloadavg()
    print(
        f"trouw simulate, {opts.customers} customers × 400 days, 1 process, under py-spy at "
        f"{opts.rate} Hz; load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    print(
        f"wall {wall:.1f} s; CPU of everything started {total_cpu:.1f} s (py-spy included); "
        f"last /proc readings: simulator {python_cpu:.1f} s, test server {server_cpu:.1f} s; "
        f"Python samples {total} = {total / opts.rate:.1f} s"
        + ("" if opts.all_threads else " holding the GIL")
    )
    for phase, count in phases.most_common():
        print(f"  {count / total:6.1%}  {count / opts.rate:6.1f} s  {phase}")
    for name, count in samples.most_common():
        print(f"  {count / total:6.1%}  {count / opts.rate:6.1f} s  {name}")
    print(f"raw profile: {raw}")


if __name__ == "__main__":
    main()
