"""The shipped scenarios' timelines from this checkout and from a reference revision: equal?

Run: .venv/bin/python bench/simulate_compare.py [--reference main] [--processes 1]
Prints one line per scenario and exits 1 when a timeline differs. Not a test: it needs a second
checkout (a clean export of the reference, git archive) and runs the command a marketer types,
`python -m trouw.commands.cli simulate FILE --json`, in each; a change that must not change
what the simulator shows (a speed-up, docs/performance.md "Simulation speed") is checked here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from simulate_bench import export  # noqa: E402

# Each shipped scenario with the journeys it is written for (its "Run:" line).
SCENARIOS = {
    "journeys/scenarios/garden_centre.yaml": None,
    "journeys/scenarios/loyalty.yaml": None,
    "journeys/scenarios/measurement.yaml": "journeys/examples",
    "journeys/scenarios/insight_segments.yaml": "journeys/examples",
}


def timeline(checkout: Path, scenario: str, journeys: str | None, processes: int) -> list[object]:
    args = [sys.executable, "-m", "trouw.commands.cli", "simulate", scenario, "--json"]
    args += ["--processes", str(processes)]
    if journeys is not None:
        args += ["--journeys", journeys]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TROUW_")}
    env["PYTHONPATH"] = str(checkout)
    done = subprocess.run(args, cwd=checkout, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1):  # 1: a run failed, which the timeline shows
        raise RuntimeError(f"{checkout}: {scenario}: {done.stderr[-2000:]}")
    records: list[object] = json.loads(done.stdout)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="main", help="git revision to compare with")
    parser.add_argument("--repo", type=Path, default=ROOT, help="the git repository of it")
    parser.add_argument("--processes", type=int, default=1)
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="trouw-simulate-compare-"))
    reference = export(opts.repo, opts.reference, work / "reference")
    differing = 0
    for scenario, journeys in SCENARIOS.items():
        theirs = timeline(reference, scenario, journeys, opts.processes)
        ours = timeline(ROOT, scenario, journeys, opts.processes)
        same = ours == theirs
        differing += not same
        first = next(
            (n for n, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), None
        )
        print(
            f"{scenario}: {'equal' if same else 'DIFFERENT'} ({len(ours)} and {len(theirs)} "
            f"records{'' if same else f', first difference at record {first}'})",
            flush=True,
        )
        if not same:
            name = Path(scenario).stem
            (work / f"{name}-this.json").write_text(json.dumps(ours, indent=1))
            (work / f"{name}-reference.json").write_text(json.dumps(theirs, indent=1))
    print(f"reference {opts.reference}; files in {work}")
    sys.exit(1 if differing else 0)


if __name__ == "__main__":
    main()
