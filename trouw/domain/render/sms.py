"""SMS segment counting: GSM-7 (with its extension table) or UCS-2, as carriers bill it."""

from __future__ import annotations

import math
from typing import Literal

SmsEncoding = Literal["GSM-7", "UCS-2"]

# GSM 03.38 basic character set (the escape 0x1B left out: it is not a character).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each costs an escape septet plus itself, so it counts 2.
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_MULTI = 160, 153
UCS2_SINGLE, UCS2_MULTI = 70, 67


def sms_segments(text: str) -> tuple[int, SmsEncoding]:
    """(segments, encoding): 160/153 septets per segment in GSM-7, 70/67 UTF-16 units in UCS-2."""
    septets = 0
    for char in text:
        if char in GSM7_BASIC:
            septets += 1
        elif char in GSM7_EXTENSION:
            septets += 2
        else:
            # One character outside GSM-7 switches the whole message to UCS-2 (UTF-16 units:
            # an emoji outside the BMP takes two).
            units = len(text.encode("utf-16-le")) // 2
            return _count(units, UCS2_SINGLE, UCS2_MULTI), "UCS-2"
    return _count(septets, GSM7_SINGLE, GSM7_MULTI), "GSM-7"


def _count(length: int, single: int, multi: int) -> int:
    if length == 0:
        return 0
    return 1 if length <= single else math.ceil(length / multi)
