"""A scenario builder for workflow tests: customers, products and events as plain dicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from trouw.commands.sample_shop import PRODUCTS
from trouw.commands.simulate import (
    Scenario,
    SimulationResult,
    TimelineEntry,
    load_scenario,
    simulate,
)

START = "2026-03-02T09:00:00+01:00"


def write_scenario(
    path: Path,
    *,
    customers: list[dict[str, Any]],
    events: list[dict[str, Any]],
    until: str = "400d",
) -> Path:
    data = {
        "start": START,
        "until": until,
        "customers": customers,
        "products": PRODUCTS,
        "events": events,
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


async def run(path: Path, journeys: Path, templates: Path) -> tuple[Scenario, SimulationResult]:
    scenario = load_scenario(path)
    result = await simulate(
        scenario, journeys_dir=journeys, templates_dir=templates, workdir=path.parent / "sim"
    )
    return scenario, result


def of(result: SimulationResult, customer: str, **match: str) -> list[TimelineEntry]:
    return [
        entry
        for entry in result.timeline
        if entry.customer == customer
        and all(getattr(entry, key) == value for key, value in match.items())
    ]
