"""`trouw simulate` of 100 customers × 400 days as a user runs it, against a reference checkout.

Run: .venv/bin/python bench/simulate_bench.py [--customers 100] [--runs 2] [--reference REV]
Prints a report; docs/performance.md ("Simulation") has the results. Not a test.

Each run is the command line a marketer types (`python -m trouw.commands.cli simulate FILE --json`, a
fresh process: imports, journey and template checks, the time-skipping servers, the customers),
timed from outside, with the CPU seconds of the command and everything it started (children's
rusage: the per-part processes and the test servers). The reference is the same command run
from a clean export of another revision (default: main) with the same virtualenv, alternated with
this checkout in the same run, so the ratio holds under whatever load the machine has. Both
timelines are compared: they must be equal.

The scenario is bench/journeys_bench.py's: each customer touches every shipped journey (a web
order of three products, its delivery, a shop purchase 40 days later, a birthday for four in five).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from journeys_bench import write  # noqa: E402


def export(repo: Path, revision: str, into: Path) -> Path:
    """A clean copy of a revision's files (git archive), to run as the reference."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", revision], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(checkout: Path, scenario: Path, processes: int | None) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (the command and all it started) and the JSON timeline."""
    args = [sys.executable, "-m", "trouw.commands.cli", "simulate", str(scenario), "--json"]
    if processes is not None:
        args += ["--processes", str(processes)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TROUW_")}
    cpu = children_cpu()
    started = time.perf_counter()
    done = subprocess.run(args, cwd=checkout, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{checkout}: simulate failed: {done.stderr[-2000:]}")
    return wall, children_cpu() - cpu, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--reference", default="main", help="git revision to compare with")
    parser.add_argument("--processes", type=int, default=None, help="default: by size")
    parser.add_argument("--repo", type=Path, default=ROOT, help="the git repository of --reference")
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="trouw-simulate-bench-"))
    scenario = write(work / "scenario.yaml", opts.customers)
    reference = export(opts.repo, opts.reference, work / "reference")
    figures: dict[str, list[tuple[float, float]]] = {"reference": [], "this checkout": []}
    timelines: dict[str, str] = {}
    for _ in range(opts.runs):
        for name, checkout in (("reference", reference), ("this checkout", ROOT)):
            before = os.getloadavg()[0]
            wall, cpu, timeline = run(checkout, scenario, opts.processes)
            figures[name].append((wall, cpu))
            timelines.setdefault(name, timeline)
            print(
                f"  {name}: {wall:.1f} s, {cpu:.1f} CPU s "
                f"(load average {before:.1f} -> {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    load = os.getloadavg()
    for name, text in timelines.items():
        (work / f"timeline-{name.replace(' ', '-')}.json").write_text(text)
    ours, theirs = json.loads(timelines["this checkout"]), json.loads(timelines["reference"])
    same = ours == theirs
    differ = [(a, b) for a, b in zip(ours, theirs, strict=False) if a != b]
    # Records that differ only in the seconds of their times (this checkout gives them to
    # the minute: trouw/commands/simulate.py TimelineEntry).
    seconds_only = sum(1 for a, b in differ if _to_minute(a) == _to_minute(b))
    decisions = sum(1 for r in json.loads(timelines["this checkout"]) if r["kind"] == "message")
    print()
    print(
        f"trouw simulate, {opts.customers} customers × 400 days, all shipped journeys "
        f"({decisions} message decisions), processes: {opts.processes or 'by size'}; "
        f"{os.cpu_count()} CPUs, load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    print("| | wall s (median) | runs | CPU s (median) |")
    print("|---|---|---|---|")
    medians = {}
    for name, rows in figures.items():
        wall = statistics.median(w for w, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        medians[name] = (wall, cpu)
        runs = ", ".join(f"{w:.1f}" for w, _ in rows)
        label = f"reference ({opts.reference})" if name == "reference" else name
        print(f"| {label} | {wall:.1f} | {runs} | {cpu:.1f} |")
    ratio_wall = medians["this checkout"][0] / medians["reference"][0]
    ratio_cpu = medians["this checkout"][1] / medians["reference"][1]
    print(f"this checkout / reference: wall {ratio_wall:.2f}×, CPU {ratio_cpu:.2f}×")
    print(
        f"timelines equal: {same} ({len(ours)} and {len(theirs)} records; {len(differ)} differ, "
        f"{seconds_only} of them only in the seconds of `at`; both in {work})"
    )


def _to_minute(record: dict[str, object]) -> dict[str, object]:
    out = dict(record)
    for key in ("at",):
        if isinstance(out.get(key), str):
            out[key] = str(out[key])[:16] + str(out[key])[19:]
    deferred = out.get("deferred")
    if isinstance(deferred, dict) and isinstance(deferred.get("at"), str):
        out["deferred"] = {**deferred, "at": deferred["at"][:16] + deferred["at"][19:]}
    return out


if __name__ == "__main__":
    main()
