"""Sends under injected faults at the provider boundary, at full size; prints the counts.

    .venv/bin/python bench/provider_faults.py                 # 1,000 SMTP sends, 30 % faulty, SIGKILL every 2-8 s
    .venv/bin/python bench/provider_faults.py --hold-only     # a server holding answers past the deadline
    .venv/bin/python bench/provider_faults.py --provider sendgrid --sends 300

The same harness as tests/reliability/ (docs/reliability.md explains what is counted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.reliability.harness import Scenario, run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=1000)
    parser.add_argument("--provider", choices=["smtp", "sendgrid", "twilio"], default="smtp")
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--call-seconds", type=float, default=3.0)
    parser.add_argument("--kill-every", type=float, nargs=2, default=[2.0, 8.0])
    parser.add_argument("--no-kills", action="store_true")
    parser.add_argument("--hold-only", action="store_true")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    scenario = Scenario(
        sends=args.sends,
        provider=args.provider,
        fault_rate=args.fault_rate,
        call_seconds=args.call_seconds,
        kill_every=None if args.no_kills else (args.kill_every[0], args.kill_every[1]),
        hold_only=args.hold_only,
        concurrency=args.concurrency,
        seed=args.seed,
        within=3600.0,
    )
    with tempfile.TemporaryDirectory(prefix="trouw-faults-") as workdir:
        report = asyncio.run(run(scenario, Path(workdir)))
    for line in report.lines():
        print(line, flush=True)
    sys.stdout.flush()
    os._exit(0)  # the Temporal client can crash at interpreter exit (sdk-python issue 300)


if __name__ == "__main__":
    main()
