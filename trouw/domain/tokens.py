"""Signed, opaque link tokens (unsubscribe, preferences, hosted copies): HMAC-SHA256, key rotation."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

TokenChannel = Literal["email", "sms", "all"]
TokenCategory = Literal["service", "promotional", "all"]

_VERSION = 1
# Domain separation: one set of keys signs every kind of link, and a token of one kind must
# never verify as another (an unsubscribe link is not a key to the hosted copy).
_MAC_CONTEXT = b"trouw.unsubscribe.v1:"
_VIEW_CONTEXT = b"trouw.view.v1:"
_KID_CONTEXT = b"trouw.key-id"
_MAX_TOKEN_LENGTH = 1024
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_PHONE_LIKE = re.compile(r"\+[0-9 ()./-]{7,}")


class InvalidTokenError(ValueError):
    """The token is garbage, truncated, tampered with, or signed by no key we hold."""


class ExpiredTokenError(InvalidTokenError):
    """The token is genuine but its time is up."""


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
    return _seal(body, key, _MAC_CONTEXT)


def verify_token(token: str, keys: Sequence[bytes]) -> TokenPayload:
    """The payload of a token signed by any of `keys`; raises InvalidTokenError otherwise."""
    body, signer = _open(token, keys, _MAC_CONTEXT)
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


@dataclass(frozen=True)
class ViewToken:
    """What a hosted-copy link says: which ledger message, until when. No personal data."""

    message_key: str
    expires_at: datetime
    key_id: str = field(default="", compare=False)


def sign_view_token(message_key: str, expires_at: datetime, keys: Sequence[bytes]) -> str:
    """A link token for the hosted copy of one message, valid until expires_at (whole seconds)."""
    if not message_key:
        raise ValueError("message_key is empty")
    key = _first_key(keys)
    body = {"v": _VERSION, "kid": key_id(key), "mk": message_key, "exp": _epoch(expires_at)}
    return _seal(body, key, _VIEW_CONTEXT)


def verify_view_token(token: str, keys: Sequence[bytes], *, now: datetime) -> ViewToken:
    """The message a hosted-copy token names; ExpiredTokenError once its time is up,
    InvalidTokenError for anything not signed by one of `keys` as a view token."""
    body, signer = _open(token, keys, _VIEW_CONTEXT)
    message_key, expires = body.get("mk"), body.get("exp")
    if not isinstance(message_key, str) or not message_key or type(expires) is not int:
        raise InvalidTokenError("invalid payload")
    view = ViewToken(message_key, datetime.fromtimestamp(expires, UTC), key_id(signer))
    if now >= view.expires_at:
        raise ExpiredTokenError(f"expired at {view.expires_at.isoformat()}")
    return view


def _epoch(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("naive datetime refused: expiry needs its zone")
    return int(when.timestamp())


def _seal(body: dict[str, Any], key: bytes, context: bytes) -> str:
    encoded = _b64encode(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    return f"{encoded}.{_mac(key, encoded, context)}"


def _open(token: str, keys: Sequence[bytes], context: bytes) -> tuple[dict[str, Any], bytes]:
    """The body of a token whose MAC (in `context`) one of `keys` made, and that key."""
    _first_key(keys)
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_LENGTH:
        raise InvalidTokenError("malformed token")
    encoded, dot, mac = token.strip().partition(".")
    if not dot or not _B64URL.fullmatch(encoded) or not _B64URL.fullmatch(mac):
        raise InvalidTokenError("malformed token")
    # Check the MAC against every key before reading the payload; each check is constant-time.
    signer = None
    for key in keys:
        if hmac.compare_digest(_mac(key, encoded, context), mac):
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
    return body, signer


def _str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name} missing")
    return value


def _first_key(keys: Sequence[bytes]) -> bytes:
    if not keys or not all(keys):
        raise ValueError("no signing keys configured (TROUW_SIGNING_KEYS)")
    return keys[0]


def _mac(key: bytes, encoded: str, context: bytes) -> str:
    return _b64encode(hmac.new(key, context + encoded.encode(), hashlib.sha256).digest())


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
