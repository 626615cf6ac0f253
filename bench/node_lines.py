"""A node script in one long-lived process, one JSON value per line each way (the npm oracles)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent


class NodeLines:
    """Starts `node -e script` in bench/ (node's start-up is paid once, not per email).

    The script first writes {"version": ...}, then answers each JSON line on stdin with one
    JSON object; an answer with "error" raises RuntimeError.
    """

    def __init__(self, script: str, *, package: str) -> None:
        if not (BENCH / "node_modules" / package).is_dir():
            sys.exit(f"npm {package} is missing: run (cd bench && npm ci) first")
        self.package = package
        self.proc = subprocess.Popen(
            ["node", "-e", script],
            cwd=BENCH,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.version = str(self._read()["version"])

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"the node {self.package} process died")
        result: dict[str, Any] = json.loads(line)
        return result

    def ask(self, value: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(value) + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)
