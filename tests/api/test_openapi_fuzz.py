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
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from babel.numbers import list_currencies
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode

from tests.api.conftest import ApiSettings, make_keys
from trouw.domain.db.engine import make_engine, migrate
from trouw.domain.ingest import CURRENCY_FORMAT, TIME_ZONE_FORMAT, TIME_ZONES, birthday_problem
from trouw.language.attributes import AttributeDeclaration
from trouw.language.locales import LocaleError, parse_locale_tag, region_of
from trouw.language.phones import PhoneError, normalise_phone
from trouw.ways_in.api.app import create_app

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
        attributes=[
            AttributeDeclaration(name=name, type=kind, personal=name == "loyalty_card")
            for name, kind in [
                ("loyalty_card", "string"),
                ("pets", "integer"),
                ("garden_m2", "number"),
                ("vip", "boolean"),
                ("member_since", "date"),
            ]
        ],
    ),
    _ENGINE,
)
# The schema names the formats of time zones and currencies; valid values are the ones the API
# itself accepts.
schemathesis.openapi.format(TIME_ZONE_FORMAT, st.sampled_from(sorted(TIME_ZONES)))
schemathesis.openapi.format(CURRENCY_FORMAT, st.sampled_from(sorted(list_currencies())))
# Every check stays on. Only one input source is off: strings lifted from our own source code
# (Schemathesis' "constants" analysis) are put into fields without honouring a custom format, so
# "smtp" would be sent as a time zone and counted as valid.
_CONFIG = SchemathesisConfig.from_dict({"analysis": {"constants": {"enabled": False}}})
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP, config=_CONFIG).include(
    path_regex="^/(v1|m)/"
)


# Rules of the API that JSON Schema cannot state. Each is said in the schema's description of
# the field and answered with a 422 naming it; valid cases are made to keep them (invalid cases
# stay as drawn), so that "valid data is accepted" is checked on everything else.
_VALID_LOCALE = "nl-BE"
_VALID_PHONE = "+32470123456"


def _keep_profile_rules(profile: dict[str, Any], customer: Any) -> None:
    if customer is not None:
        profile["id"] = customer  # an event's profile is the event's customer
    locale = profile.get("locale")
    if isinstance(locale, str):
        try:
            parse_locale_tag(locale)  # well-formed per the pattern, and a language CLDR knows
        except LocaleError:
            profile["locale"] = _VALID_LOCALE
    phone = profile.get("phone")
    if isinstance(phone, str):
        try:
            normalise_phone(phone, country=region_of(profile.get("locale")))  # a possible number
        except PhoneError:
            profile["phone"] = _VALID_PHONE
    birthday = profile.get("birthday")
    if isinstance(birthday, str) and birthday_problem(date.fromisoformat(birthday)):
        profile["birthday"] = "1979-04-24"  # from 1900 up to today
    clear = profile.get("clear")
    if isinstance(clear, list):  # a field is given or cleared, not both
        profile["clear"] = [name for name in clear if profile.get(name) is None]


def _keep_period_rule(query: dict[str, Any]) -> None:
    """A report period's `from` lies before its `to` (now when absent)."""
    start, end = query.get("from"), query.get("to")
    if not isinstance(start, str):
        return
    try:
        begin = datetime.fromisoformat(start)
        until = datetime.fromisoformat(end) if isinstance(end, str) else datetime.now(UTC)
        if begin >= until:
            del query["from"]
    except (ValueError, TypeError):
        return  # a timestamp Python cannot compare stays as drawn


def _keep_one_lookup(query: dict[str, Any]) -> None:
    """A voucher lookup names the customer by exactly one of customer, email, phone, card."""
    given = [name for name in ("customer", "email", "phone", "card") if query.get(name)]
    for name in given[1:]:
        del query[name]
    if not given:
        query["customer"] = "0"


@schema.hook
def map_case(_context: Any, case: Any) -> Any:
    body = case.body
    positive = case.meta is None or case.meta.generation.mode == GenerationMode.POSITIVE
    if positive and isinstance(body, dict):
        if "customer" in body and isinstance(body.get("profile"), dict):
            _keep_profile_rules(body["profile"], body["customer"])
        elif case.operation.path == "/v1/customers":
            _keep_profile_rules(body, None)
    if positive and isinstance(case.query, dict) and case.operation.path.startswith("/v1/reports"):
        _keep_period_rule(case.query)
    if positive and case.operation.path == "/v1/vouchers":
        case.query = dict(case.query or {})
        _keep_one_lookup(case.query)
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
