"""The customer's loyalty page in headless Chromium at phone width: points, level, vouchers with
barcodes the till can scan, the points history, and the way to the preferences."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_browser import Browser, chromium, server  # noqa: F401 - fixtures
from trouw.db.engine import session_scope
from trouw.ingest import EventIn, ingest_event
from trouw.loyalty import vouchers
from trouw.tokens import TokenPayload, sign_token

pytestmark = pytest.mark.slow
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}


def seed(engine: Any) -> list[str]:
    """c1 gets a card, buys for 620 points (level zilver) and holds two open vouchers."""
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        ingest_event(
            session,
            EventIn.model_validate(
                {
                    "id": "buy-1",
                    "type": "purchase",
                    "customer": "c1",
                    "order": "o1",
                    "channel": "pos",
                    "at": now - timedelta(days=2),
                    "lines": [{"sku": "BBQ", "name": "Houtskoolbarbecue", "unit_price": "620"}],
                    "profile": {"id": "c1", "attributes": {"loyalty_card": "2200001234567"}},
                }
            ),
            now=now,
        )
        codes = []
        for number, value in enumerate(("5", "10")):
            voucher, _new = vouchers.issue(
                session,
                customer_id="c1",
                value=Decimal(value),
                expires_at=now + timedelta(days=30 + number),
                issued_key=f"browser-{number}",
                now=now,
                prefix="WELKOM",
                min_order_total=Decimal("25") if number else None,
            )
            codes.append(voucher.code)
    return codes


def test_loyalty_page_on_a_phone(
    chromium: Browser,  # noqa: F811
    server: tuple[str, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    base, engine = server
    codes = seed(engine)
    token = sign_token(TokenPayload(customer_id="c1"), [b"test-key"])
    chromium.send("Emulation.setDeviceMetricsOverride", **PHONE)
    chromium.open(f"{base}/loyalty/{token}")

    assert chromium.text("#points-value") == "620"
    assert chromium.text("#level") == "zilver"
    assert chromium.text("#next-level") == "Nog 880 punten tot goud"
    page = chromium.text("main").replace("\xa0", " ")
    for code in codes:
        assert code in page
    assert "Vanaf een aankoop van € 25,00" in page
    assert "Aankoop: 1 x Houtskoolbarbecue" in page and "+620" in page
    # The barcodes are drawn (the page's policy allows its data: images) and fit the screen.
    widths = chromium.evaluate(
        "[...document.querySelectorAll('#vouchers img, #card img')].map(i => i.naturalWidth)"
    )
    assert len(widths) == 3 and all(width > 0 for width in widths)
    assert chromium.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert chromium.evaluate(
        "[...document.querySelectorAll('img')].every(i => i.getBoundingClientRect().right <= 390)"
    )
    assert chromium.evaluate(
        "document.querySelector('#preferences-link').getAttribute('href')"
    ) == (f"/preferences/{token}")
    shot = base64.b64decode(
        chromium.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
    )
    assert shot.startswith(b"\x89PNG")
    folder = Path(os.environ.get("TROUW_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "loyalty_page_phone.png").write_bytes(shot)


def test_loyalty_page_refuses_a_forged_link(
    chromium: Browser,  # noqa: F811
    server: tuple[str, Any],  # noqa: F811
) -> None:
    base, _engine = server
    chromium.open(f"{base}/loyalty/{sign_token(TokenPayload(customer_id='c1'), [b'other'])}")
    # The browser asks for English: the refusal is in its language, and shows nothing else.
    assert "This link does not work" in chromium.text("main")
    assert "points" not in chromium.text("main")
