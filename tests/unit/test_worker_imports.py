"""A worker starts without the libraries only rare work needs (insight's numpy and SciPy, the API)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

# What run_stack imports for a worker without the API (trouw/stack/runtime.py).
WORKER_MODULES = (
    "trouw.stack.runtime",
    "trouw.stack.worker",
    "trouw.stack.relay",
    "trouw.stack.runs",
    "trouw.domain.loyalty.sweep",
    "trouw.domain.measure.rollup",
    "trouw.domain.insight.refresh",
    "activities",
)
# Imported on first use only: the insight refresh (numpy, SciPy: some 80 MiB of a worker's
# 220 MiB at start), the API and its pages, migrations that the schema does not need.
NOT_AT_START = ("numpy", "scipy", "fastapi", "uvicorn", "alembic", "PIL", "pygal", "typer")


def _loaded_at_start() -> set[str]:
    code = (
        "import json, sys\n"
        + "".join(f"import {module}\n" for module in WORKER_MODULES)
        + "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(json.loads(out))


def test_a_worker_imports_no_numeric_or_api_library_at_start() -> None:
    assert _loaded_at_start() & set(NOT_AT_START) == set()


def test_the_insight_package_still_gives_its_numeric_functions() -> None:
    from trouw.domain.insight import ShopScores, recommend, score_shop
    from trouw.domain.insight.rules import recommend as from_rules
    from trouw.domain.insight.scoring import ShopScores as from_scoring
    from trouw.domain.insight.scoring import score_shop as scoring_score_shop

    assert recommend is from_rules and ShopScores is from_scoring
    assert score_shop is scoring_score_shop
