"""Reading Benelux cell values, sniffing separators and encodings, parsing durations."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from trouw.language.cells import (
    CellError,
    normalise_phone,
    parse_bool,
    parse_date,
    parse_datetime,
    parse_decimal,
    parse_int,
)
from trouw.ways_in.imports.connector import parse_duration
from trouw.ways_in.imports.mapping import MappingError, load_mapping
from trouw.ways_in.imports.source import detect_encoding, sniff_delimiter


@pytest.mark.parametrize(
    ("text", "decimal", "expected"),
    [
        ("24,95", "auto", "24.95"),
        ("1.234,50", "auto", "1234.50"),
        ("€ 1 234,50", ",", "1234.50"),
        ("1,234.50", "auto", "1234.50"),
        ("24.95", ".", "24.95"),
        ("1.234", ",", "1234"),
        ("-3,00", ",", "-3.00"),
        (12, "auto", "12"),
    ],
)
def test_amounts_in_both_notations(text: str, decimal: str, expected: str) -> None:
    assert parse_decimal(text, decimal=decimal) == Decimal(expected)


@pytest.mark.parametrize("text", ["abc", "1,2,3.4.5", "", "12a"])
def test_not_an_amount(text: str) -> None:
    with pytest.raises(CellError):
        parse_decimal(text)


def test_quantities_are_whole() -> None:
    assert parse_int("2,00") == 2
    with pytest.raises(CellError, match="not a whole number"):
        parse_int("1,5")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("02-03-2026", datetime(2026, 3, 1, 23, 0, tzinfo=UTC)),
        ("02/03/2026 14:05", datetime(2026, 3, 2, 13, 5, tzinfo=UTC)),
        ("02.03.2026 14:05:30", datetime(2026, 3, 2, 13, 5, 30, tzinfo=UTC)),
        ("2026-07-02T14:05:00+02:00", datetime(2026, 7, 2, 12, 5, tzinfo=UTC)),
        ("2026-03-02T13:05:00Z", datetime(2026, 3, 2, 13, 5, tzinfo=UTC)),
    ],
)
def test_dates_are_day_first_and_local(text: str, expected: datetime) -> None:
    assert parse_datetime(text, zone="Europe/Brussels") == expected


def test_a_given_date_format_wins_and_accepts_a_time() -> None:
    moment = parse_datetime("03/02/2026 10:00", formats=("%m/%d/%Y",), zone="UTC")
    assert moment == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    with pytest.raises(CellError, match="expected %m/%d/%Y"):
        parse_datetime("2026-03-02", formats=("%m/%d/%Y",), zone="UTC")
    assert parse_date("24-04-1979") == date(1979, 4, 24)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0470/12.34.56", "+32470123456"),
        ("0032 470 12 34 56", "+32470123456"),
        ("+31 6 12345678", "+31612345678"),
    ],
)
def test_phone_numbers_in_international_form(text: str, expected: str) -> None:
    assert normalise_phone(text, country="32") == expected


def test_local_phone_without_country_is_refused() -> None:
    with pytest.raises(CellError, match="phone_country"):
        normalise_phone("0470123456", country=None)


def test_yes_and_no_in_three_languages() -> None:
    assert [parse_bool(v) for v in ("ja", "Oui", "1", "x", "nee", "non", "0")] == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
    ]


def test_separator_is_sniffed_from_the_header() -> None:
    assert sniff_delimiter("a;b;c,d\n") == ";"
    assert sniff_delimiter("a,b,c\n") == ","
    assert sniff_delimiter("a\tb\n") == "\t"
    assert sniff_delimiter("single\n") == ","


def test_encoding_is_detected(tmp_path: Path) -> None:
    cases = {
        "bom.csv": b"\xef\xbb\xbfnaam\nZo\xc3\xab\n",
        "utf8.csv": b"naam\nZo\xc3\xab\n",
        "ansi.csv": b"naam\n" + b"x\n" * 100_000 + b"Ren\xe9\n",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    assert detect_encoding(tmp_path / "bom.csv") == "utf-8-sig"
    assert detect_encoding(tmp_path / "utf8.csv") == "utf-8"
    # The only accent sits far beyond the first chunk: the whole file is checked.
    assert detect_encoding(tmp_path / "ansi.csv") == "cp1252"


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("2", 2)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m5", "0s", "five minutes"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_a_mapping_with_an_unknown_key_names_it(tmp_path: Path) -> None:
    path = tmp_path / "mappings.toml"
    path.write_text('[orders.pos]\norder_id = "Bon"\nordr = "x"\n', encoding="utf-8")
    with pytest.raises(MappingError, match=r"\[orders.pos\]: unknown key 'ordr'"):
        load_mapping("orders", "pos", path=path)
    with pytest.raises(MappingError, match=r"no mapping \[orders.nope\] \(known for orders: pos\)"):
        load_mapping("orders", "nope", path=path)


def test_every_shipped_mapping_loads() -> None:
    import tomllib

    path = Path(__file__).resolve().parents[2] / "config" / "import_mappings.toml"
    tables = tomllib.loads(path.read_text(encoding="utf-8"))
    for kind, mappings in tables.items():
        for name in mappings:
            assert load_mapping(kind, name, path=path).label == f"{kind}.{name}"
