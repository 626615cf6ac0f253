"""Schemathesis with every check against /openapi.json: the document describes what the API does.

Each /v1 operation gets generated valid and invalid requests, and every answer is checked for: no
5xx, a documented status code, a body and content type matching the documented response, valid
data accepted, invalid data refused, a missing key refused, and 405 with `Allow` for a method a
path lacks. A finding is fixed in the API or in the schema, never by switching its check off.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode

from tests.api.conftest import ApiSettings, make_keys
from trouw.api.app import create_app
from trouw.db.engine import make_engine, migrate
from trouw.ingest import TIME_ZONE_FORMAT, TIME_ZONES

# Bounded so the run stays well within CI's budget; derandomized, so every run draws the same.
MAX_EXAMPLES = 25

# Schemathesis reads the schema when the module is collected, so the app exists by then; its
# database lives in a temp folder removed at exit.
_HOME = Path(tempfile.mkdtemp(prefix="trouw-fuzz-"))
atexit.register(shutil.rmtree, _HOME, True)
_ENGINE = make_engine(f"sqlite:///{_HOME / 'fuzz.db'}")
migrate(_ENGINE)
_KEYS = make_keys(_ENGINE)
_APP = create_app(
    ApiSettings(
        home=_HOME / "home",
        database_url=f"sqlite:///{_HOME / 'fuzz.db'}",
        signing_keys=["fuzz-key"],
    ),
    _ENGINE,
)
# The schema names the format of a time zone; valid ones are the names the API itself accepts.
schemathesis.openapi.format(TIME_ZONE_FORMAT, st.sampled_from(sorted(TIME_ZONES)))
# Every check stays on. Only one input source is off: strings lifted from our own source code
# (Schemathesis' "constants" analysis) are put into fields without honouring a custom format, so
# "smtp" would be sent as a time zone and counted as valid.
_CONFIG = SchemathesisConfig.from_dict({"analysis": {"constants": {"enabled": False}}})
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP, config=_CONFIG).include(
    path_regex="^/v1/"
)


@schema.hook
def map_case(_context: Any, case: Any) -> Any:
    """An event's `profile.id` must equal its `customer`: JSON Schema cannot say so, we do.

    The rule is in the schema's description of `profile`; a valid request keeps it, so valid
    cases are made to keep it too (invalid ones stay as drawn).
    """
    body = case.body
    positive = case.meta is None or case.meta.generation.mode == GenerationMode.POSITIVE
    if (
        positive
        and isinstance(body, dict)
        and isinstance(body.get("profile"), dict)
        and "customer" in body
    ):
        body["profile"]["id"] = body["customer"]
    return case


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_the_api_does_what_its_openapi_document_says(case: Any) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {_KEYS['admin']}"})
