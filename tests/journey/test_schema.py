"""journeys/schema.json is generated from the models and kept in step with them."""

from __future__ import annotations

import json

from tests.conftest import ROOT
from trouw.language.journey.model import journey_json_schema


def test_schema_file_matches_the_models() -> None:
    stored = json.loads((ROOT / "journeys/schema.json").read_text())
    assert stored == journey_json_schema(), (
        "regenerate: trouw validate --schema journeys/schema.json"
    )


def test_schema_knows_every_step_action() -> None:
    text = (ROOT / "journeys/schema.json").read_text()
    for action in (
        "send",
        "wait",
        "wait_until",
        "wait_for",
        "branch",
        "split",
        "update",
        "call",
        "goal",
        "exit",
    ):
        assert f'"{action}"' in text
