"""Schemathesis against the OpenAPI spec: no generated input makes a /v1 endpoint answer 500."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.api.conftest import ApiSettings, make_keys
from trouw.api.app import create_app
from trouw.db.engine import make_engine, migrate

# Bounded so the whole suite stays under a minute; CI runs the same numbers every time.
MAX_EXAMPLES = 50

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
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP).include(path_regex="^/v1/")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_error_with_a_valid_key(case: Any) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {_KEYS['admin']}"}, checks=[not_a_server_error]
    )
