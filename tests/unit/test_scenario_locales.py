"""Scenarios and previews take any BCP 47 locale (and scenario phones national ones); bad ones say where."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_cli_simulate import trouw
from trouw.commands.simulate import load_scenario
from trouw.language.journey.loader import JourneyError

SCENARIO = """start: 2026-03-02T09:00:00+01:00
until: 30d
customers:
  - id: c1
    email: c1@example.com
    locale: nl-BE
  - id: c2
    email: c2@example.com
    locale: {locale}
    phone: "{phone}"
products:
  - {{sku: LAWN-10, name: "Gazonmest 10 kg", price: 24.95}}
events:
  - {{at: 0d, type: purchase, customer: c2, order: o1, channel: web, lines: [{{sku: LAWN-10}}]}}
"""


@pytest.mark.parametrize("tag", ["de-BE", "en-GB", "fr-FR", "nl"])
def test_any_valid_locale_loads(tmp_path: Path, tag: str) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.format(locale=tag, phone="+32 470 12 34 56"))
    assert load_scenario(path).customers[1].locale == tag


def test_invalid_locale_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.format(locale="nl_BE", phone="+32470123456"))
    with pytest.raises(JourneyError) as caught:
        load_scenario(path)
    text = str(caught.value)
    assert f"{path}:9:" in text and "write 'nl-BE'" in text


def test_national_phone_is_read_in_the_locales_region(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.format(locale="nl-BE", phone="0470 12 34 56"))
    assert load_scenario(path).customers[1].phone == "+32470123456"
    path.write_text(SCENARIO.format(locale="en", phone="0470 12 34 56"))
    with pytest.raises(JourneyError) as caught:
        load_scenario(path)
    assert f"{path}:10:" in str(caught.value) and "no country is known" in str(caught.value)


def test_preview_takes_any_locale_and_refuses_what_is_none(tmp_path: Path) -> None:
    done = trouw("preview", "order_confirmation", "--locale", "fr_fr", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "email order_confirmation (fr-FR)" in done.stdout
    bad = trouw("preview", "order_confirmation", "--locale", "nl_be_x", "--out", str(tmp_path))
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "error: --locale: locale 'nl-BE-x' is not a BCP 47 tag (like nl-BE, fr, en-GB)"
    )
