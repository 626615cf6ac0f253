"""SMS segment counting in GSM-7 (with extension table) and UCS-2."""

from __future__ import annotations

import pytest

from trouw.domain.render import sms_segments


def test_empty_is_zero_segments() -> None:
    assert sms_segments("") == (0, "GSM-7")


@pytest.mark.parametrize(
    ("length", "segments"), [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3)]
)
def test_gsm7_160_then_153(length: int, segments: int) -> None:
    assert sms_segments("a" * length) == (segments, "GSM-7")


def test_euro_sign_counts_two_septets() -> None:
    assert sms_segments("€" * 80) == (1, "GSM-7")
    assert sms_segments("€" * 81) == (2, "GSM-7")
    assert sms_segments("a" * 159 + "€") == (2, "GSM-7")
    assert sms_segments("a" * 158 + "[") == (1, "GSM-7")


def test_gsm7_basic_table_accents_stay_gsm7() -> None:
    text = "é è ù ì ò Ç Ø ø Å å Ä Ö Ñ Ü § ¿ ä ö ñ ü à É Æ æ ß"
    assert sms_segments(text) == (1, "GSM-7")


@pytest.mark.parametrize("char", ["ë", "ê", "ç", "ï", "ô", "\u00a0", "’", "🌱"])
def test_one_non_gsm_character_switches_to_ucs2(char: str) -> None:
    assert sms_segments(char) == (1, "UCS-2")
    assert sms_segments("a" * 69 + char)[1] == "UCS-2"


def test_ucs2_70_then_67() -> None:
    assert sms_segments("ë" * 70) == (1, "UCS-2")
    assert sms_segments("ë" * 71) == (2, "UCS-2")
    assert sms_segments("ë" * 134) == (2, "UCS-2")
    assert sms_segments("ë" * 135) == (3, "UCS-2")


def test_emoji_takes_two_utf16_units() -> None:
    assert sms_segments("🌱" * 35) == (1, "UCS-2")
    assert sms_segments("🌱" * 36) == (2, "UCS-2")
