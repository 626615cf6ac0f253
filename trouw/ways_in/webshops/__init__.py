"""The webshops Trouw takes orders from, by name: one module each, imported on first use."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol, cast

from sqlmodel import Session

from trouw.ways_in.webshops.mapping import Mapped, WebhookPayloadError

__all__ = ["Mapped", "UnknownWebshopError", "Webshop", "WebhookPayloadError", "names", "webshop"]

# Adding a shop: a module with the attributes of `Webshop`, and its name here.
_MODULES = {
    "shopify": "trouw.ways_in.webshops.shopify",
    "woocommerce": "trouw.ways_in.webshops.woocommerce",
}


class UnknownWebshopError(LookupError):
    """No mapping for this webshop name."""


class Webshop(Protocol):
    """What a webshop module provides: how its webhooks are signed and what they mean."""

    NAME: str
    SECRET_SETTING: str  # the setting holding the webhook secret
    SIGNATURE_HEADER: str  # base64(HMAC-SHA256(secret, raw body))
    TOPIC_HEADER: str
    DELIVERY_HEADER: str | None  # a delivery id kept across retries, if the shop sends one

    def map_webhook(self, session: Session, topic: str, payload: Mapping[str, Any]) -> Mapped:
        """Our events for one verified webhook, and why anything was left out."""
        ...


def names() -> tuple[str, ...]:
    return tuple(_MODULES)


def webshop(name: str) -> Webshop:
    """The webshop module for `name`; UnknownWebshopError lists the known ones."""
    module = _MODULES.get(name)
    if module is None:
        raise UnknownWebshopError(f"unknown webshop {name!r}; known: {', '.join(_MODULES)}")
    return cast(Webshop, importlib.import_module(module))
