"""Runs every benchmark in turn and prints their reports (`make bench`); figures go to docs/performance.md."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCRIPTS = [
    ("templates: render speed", ["render_bench.py"]),
    ("providers: sends per second", ["send_bench.py"]),
    ("journeys: simulation speed and history size", ["journeys_bench.py"]),
    ("imports: 100,000 order lines", ["import_bench.py"]),
    ("API: intake and purchase-to-confirmation latency", ["api_bench.py"]),
    ("engine: Trouw vs a bare Temporal reference", ["engine_bench.py", "--quick"]),
    ("phones: accuracy and speed of E.164 normalisation", ["phone_bench.py"]),
    ("measurement: journey report over 1M messages", ["report_bench.py"]),
    ("measurement: click redirect at 200/s beside /healthz", ["click_bench.py"]),
    ("loyalty: voucher lookup/redeem latency, balances", ["loyalty_bench.py"]),
    ("insight: models on CDNOW, small shops, scoring and rule speed", ["insight_bench.py"]),
    ("insight: the model chosen inside CDNOW's calibration period", ["insight_validation.py"]),
    ("workers: throughput with one and two worker processes", ["workers_bench.py"]),
]
NODE_SCRIPTS = [
    ("MJML fidelity vs npm mjml", ["mjml_fidelity.py"]),
    ("MJML renderers compared", ["mjml_compare.py"]),
    ("email client support (caniemail)", ["email_support.py"]),
]


def main() -> int:
    scripts = list(SCRIPTS)
    if (BENCH / "node_modules" / "mjml").is_dir():
        scripts += NODE_SCRIPTS
    else:
        print("(skipping the npm benches: run `cd bench && npm ci` first)\n")
    failed = 0
    for title, args in scripts:
        print(f"=== {title} ===", flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, str(BENCH / args[0]), *args[1:]], check=False)
        print(
            f"--- {args[0]}: exit {done.returncode} in {time.monotonic() - started:.0f} s\n",
            flush=True,
        )
        failed += done.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
