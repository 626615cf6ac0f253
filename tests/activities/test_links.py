"""Links in emails point at pages that exist: the webshop's for reviews and reorders."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from trouw.domain.message_context import template_links
from trouw.language.contracts import SendMessageInput
from trouw.settings import Settings, SettingsError, load_settings

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_review_and_reorder_links_use_the_webshop_settings() -> None:
    settings = Settings(
        signing_keys=["k"],
        review_url="https://shop.example/reviews/new?order={order}",
        product_url="https://shop.example/products/{sku}",
        shop_url="https://shop.example",
    )
    links = template_links(
        settings,
        SendMessageInput(
            message_key="journey:c1:refill:o/1:SKU 1#0:reminder:email",
            customer_id="c1",
            journey="refill",
            journey_version="1",
            workflow_id="journey:c1:refill:o/1",
            step="reminder",
            channel="email",
            template="refill_reminder",
            category="service",
            triggered_at=NOW,
            service_cutoff_days=180,
            now=NOW,
            order_id="o/1",
            skus=["SKU 1"],
        ),
    )
    assert links["review"] == "https://shop.example/reviews/new?order=o%2F1"
    assert links["reorder"] == "https://shop.example/products/SKU%201"
    assert links["shop"] == "https://shop.example"
    # A webshop order: its page knows the shop's name for it, not Trouw's "shopify:..." id.
    webshop = template_links(
        settings,
        SendMessageInput(
            message_key="journey:c1:post_purchase:shopify:450789469#0:review:email",
            customer_id="c1",
            journey="post_purchase",
            journey_version="1",
            workflow_id="journey:c1:post_purchase:shopify:450789469",
            step="review",
            channel="email",
            template="review_request",
            category="service",
            triggered_at=NOW,
            service_cutoff_days=180,
            now=NOW,
            order_id="shopify:450789469",
        ),
        order_name="#1001",
    )
    assert webshop["review"] == "https://shop.example/reviews/new?order=%231001"
    assert links["unsubscribe"].startswith("http://127.0.0.1:8000/u/")


def test_a_link_template_with_an_unknown_field_is_a_bad_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TROUW_REVIEW_URL", "https://shop.example/r/{orderid}")
    with pytest.raises(SettingsError, match="TROUW_REVIEW_URL: Value error, use only"):
        load_settings()
