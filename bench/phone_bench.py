"""Phone normalisation: how many real-world inputs each approach gets right, and how fast ours is.

Compares trouw.language.phones (phonenumbers) with the separator-stripping rule Trouw used before
(drop separators, 00 -> +, a leading 0 -> one calling code). Prints a report; asserts nothing.
"""

from __future__ import annotations

import re
import time

from trouw.language.phones import PhoneError, normalise_phone

# (as a shop or till sends it, the country we know, the E.164 a person would dial; None: refuse)
CASES: list[tuple[str, str | None, str | None]] = [
    ("(555) 555-5555", "US", "+15555555555"),  # WooCommerce REST docs, billing.phone
    ("555-625-1199", "US", "+15556251199"),  # Shopify's order fixture, billing_address.phone
    ("0470 12 34 56", "BE", "+32470123456"),
    ("0470/12.34.56", "BE", "+32470123456"),
    ("02 555 12 12", "BE", "+3225551212"),
    ("06 12345678", "NL", "+31612345678"),
    ("020 7946 0958", "GB", "+442079460958"),
    ("0032 470 12 34 56", None, "+32470123456"),
    ("+32 (0)470 12 34 56", None, "+32470123456"),
    ("+31-6-1234-5678", "BE", "+31612345678"),
    ("+44 20 7946 0958", "BE", "+442079460958"),
    ("+32 470 12 34 56 ext. 12", None, None),  # an extension: SMS cannot reach it
    ("0470 12 34 56", None, None),  # national, country unknown
    ("+32 470", None, None),  # too short
]
_CALLING = {"BE": "32", "NL": "31", "GB": "44", "US": "1"}


def old_rule(raw: str, country: str | None) -> str | None:
    text = re.sub(r"[\s./()\-\u00a0]", "", raw)
    if text.startswith("00"):
        text = "+" + text[2:]
    elif text.startswith("0") and country:
        text = f"+{_CALLING[country]}{text[1:]}"
    return text if re.fullmatch(r"\+[1-9]\d{6,14}", text) else None


def ours(raw: str, country: str | None) -> str | None:
    try:
        return normalise_phone(raw, country=country)
    except PhoneError:
        return None


def per_call_us(raw: str, country: str | None, rounds: int = 20_000) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        ours(raw, country)
    return (time.perf_counter() - start) / rounds * 1e6


def main() -> None:
    right_old = sum(old_rule(raw, c) == want for raw, c, want in CASES)
    right_new = sum(ours(raw, c) == want for raw, c, want in CASES)
    print(f"cases: {len(CASES)}")
    print(f"separator rule (before): {right_old}/{len(CASES)} right")
    print(f"phonenumbers (trouw.language.phones): {right_new}/{len(CASES)} right")
    for raw, c, want in CASES:
        if old_rule(raw, c) != want:
            print(f"  before got {old_rule(raw, c)!r} for {raw!r} ({c}), want {want!r}")
    print(f"E.164 input: {per_call_us('+32470123456', None):.0f} µs per number")
    print(f"national input: {per_call_us('0470 12 34 56', 'BE'):.0f} µs per number")


if __name__ == "__main__":
    main()
