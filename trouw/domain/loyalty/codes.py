"""Voucher and referral codes: unguessable in production, readable and predictable in simulation.

Production: HMAC-SHA256(signing key, the issuing request's key), 60 bits in Crockford base32
(no I, L, O, U: nothing a cashier misreads), so a retried issue gives the same code and nobody
without the key can produce a valid one. Simulation (`scenario` mode): PREFIX-CUSTOMER-N, the
n-th code of that prefix for that customer, so a scenario can name the code it will redeem.
"""

from __future__ import annotations

import hashlib
import hmac
import re

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_CHARS = 12  # 60 bits
_PREFIX = re.compile(r"[^A-Z0-9]")
# What a cashier may type for a Crockford character.
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})


def _base32(data: bytes, length: int) -> str:
    number = int.from_bytes(data, "big")
    chars = []
    for _ in range(length):
        chars.append(CROCKFORD[number & 31])
        number >>= 5
    return "".join(chars)


def clean_prefix(prefix: str) -> str:
    return _PREFIX.sub("", prefix.upper())[:10] or "TROUW"


def secret_code(key: bytes, request_key: str, prefix: str, *, attempt: int = 0) -> str:
    """PREFIX-XXXXXXXXXXXX from the request's key; `attempt` > 0 picks another on a collision."""
    digest = hmac.new(key, f"{request_key}\x00{attempt}".encode(), hashlib.sha256).digest()
    return f"{clean_prefix(prefix)}-{_base32(digest, CODE_CHARS)}"


def scenario_code(prefix: str, customer_id: str, number: int) -> str:
    """The simulation's readable code: WELKOM-C1-1 for c1's first WELKOM voucher."""
    return f"{clean_prefix(prefix)}-{_PREFIX.sub('', customer_id.upper())}-{number}"


def referral_code(key: bytes, customer_id: str, *, attempt: int = 0) -> str:
    digest = hmac.new(key, f"referral\x00{customer_id}\x00{attempt}".encode(), hashlib.sha256)
    return _base32(digest.digest(), 8)


def normalise(code: str) -> str:
    """A code as typed or scanned: trimmed, upper case, Crockford look-alikes read as digits
    after the prefix (O -> 0, I and L -> 1)."""
    text = code.strip().upper().replace(" ", "")
    prefix, sep, rest = text.partition("-")
    if not sep:
        return text
    return f"{prefix}-{rest.translate(_READ_AS)}" if "-" not in rest else text
