"""Signed, opaque unsubscribe and preference tokens (RFC 8058 links): HMAC-SHA256, key rotation."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

TokenChannel = Literal["email", "sms", "all"]
TokenCategory = Literal["service", "promotional", "all"]

_VERSION = 1
# Domain separation: the same signing keys may sign other things (click links) one day.
_MAC_CONTEXT = b"trouw.unsubscribe.v1:"
_KID_CONTEXT = b"trouw.key-id"
_MAX_TOKEN_LENGTH = 1024
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_PHONE_LIKE = re.compile(r"\+[0-9 ()./-]{7,}")


class InvalidTokenError(ValueError):
    """The token is garbage, truncated, tampered with, or signed by no key we hold."""


@dataclass(frozen=True)
class TokenPayload:
    """What a token says: whose preference, for which scope. No personal data."""

    customer_id: str  # the retailer's opaque customer id, never an address
    channel: TokenChannel = "all"
    category: TokenCategory = "all"  # receipts cannot be unsubscribed from, so no transactional
    message_key: str | None = None  # the message the link came from, for the consent evidence
    # Which key signed it; filled in by verify_token, ignored by sign_token and by equality.
    key_id: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.customer_id:
            raise ValueError("customer_id is empty")
        if "@" in self.customer_id or _PHONE_LIKE.fullmatch(self.customer_id):
            raise ValueError("customer_id looks like an email address or phone number")
        if self.channel not in ("email", "sms", "all"):
            raise ValueError(f"unknown channel {self.channel!r}")
        if self.category not in ("service", "promotional", "all"):
            raise ValueError(f"category must be service, promotional or all, not {self.category!r}")


def key_id(key: bytes) -> str:
    """A short public name for a key: reveals nothing about it, tells which one signed."""
    digest = hmac.new(key, _KID_CONTEXT, hashlib.sha256).digest()
    return _b64encode(digest[:6])


def sign_token(payload: TokenPayload, keys: Sequence[bytes]) -> str:
    """`base64url(json).base64url(mac)`, signed with keys[0] (the newest); never expires."""
    key = _first_key(keys)
    body: dict[str, Any] = {
        "v": _VERSION,
        "kid": key_id(key),
        "cid": payload.customer_id,
        "ch": payload.channel,
        "cat": payload.category,
    }
    if payload.message_key is not None:
        body["mk"] = payload.message_key
    encoded = _b64encode(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    return f"{encoded}.{_mac(key, encoded)}"


def verify_token(token: str, keys: Sequence[bytes]) -> TokenPayload:
    """The payload of a token signed by any of `keys`; raises InvalidTokenError otherwise."""
    _first_key(keys)
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_LENGTH:
        raise InvalidTokenError("malformed token")
    encoded, dot, mac = token.strip().partition(".")
    if not dot or not _B64URL.fullmatch(encoded) or not _B64URL.fullmatch(mac):
        raise InvalidTokenError("malformed token")
    # Check the MAC against every key before reading the payload; each check is constant-time.
    signer = None
    for key in keys:
        if hmac.compare_digest(_mac(key, encoded), mac):
            signer = key
            break
    if signer is None:
        raise InvalidTokenError("bad signature")
    try:
        body = json.loads(_b64decode(encoded))
    except (ValueError, binascii.Error) as exc:
        raise InvalidTokenError("malformed payload") from exc
    if not isinstance(body, dict) or body.get("v") != _VERSION:
        raise InvalidTokenError("unknown token version")
    if body.get("kid") != key_id(signer):
        raise InvalidTokenError("key id does not match the signing key")
    try:
        return TokenPayload(
            customer_id=_str(body, "cid"),
            channel=cast(TokenChannel, _str(body, "ch")),
            category=cast(TokenCategory, _str(body, "cat")),
            message_key=body["mk"] if isinstance(body.get("mk"), str) else None,
            key_id=key_id(signer),
        )
    except ValueError as exc:
        raise InvalidTokenError(f"invalid payload: {exc}") from exc


def _str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name} missing")
    return value


def _first_key(keys: Sequence[bytes]) -> bytes:
    if not keys or not all(keys):
        raise ValueError("no signing keys configured (TROUW_SIGNING_KEYS)")
    return keys[0]


def _mac(key: bytes, encoded: str) -> str:
    return _b64encode(hmac.new(key, _MAC_CONTEXT + encoded.encode(), hashlib.sha256).digest())


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
