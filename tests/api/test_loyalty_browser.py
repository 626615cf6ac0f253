"""The customer's loyalty page in headless Chromium at phone width: points, level, vouchers with
barcodes the till can scan, the points history, and the way to the preferences."""

from __future__ import annotations

import base64
import io
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from PIL import Image

from tests.api.test_browser import Browser, chromium, server  # noqa: F401 - fixtures
from trouw.domain.db.engine import session_scope
from trouw.domain.ingest import EventIn, ingest_event
from trouw.domain.loyalty import vouchers
from trouw.domain.tokens import TokenPayload, sign_token

pytestmark = pytest.mark.slow
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
CARD = "2200001234567"


def scanned_barcodes(chromium: Browser) -> list[tuple[str, list[str]]]:  # noqa: F811
    """Each barcode image on the page as the phone shows it (a screenshot of its box), read by
    an independent decoder (zxing-cpp): its alt text and what the decoder found in it."""
    boxes = chromium.evaluate(
        "[...document.querySelectorAll('#vouchers img, #card img')].map(i => {"
        " const r = i.getBoundingClientRect();"
        " return [i.alt, r.x + scrollX, r.y + scrollY, r.width, r.height]; })"
    )
    found = []
    for alt, x, y, width, height in boxes:
        shot = chromium.send(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": x, "y": y, "width": width, "height": height, "scale": 2},
        )
        image = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("L")
        decoded = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.Code128)
        found.append((alt, [barcode.text for barcode in decoded]))
    return found


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
                    "profile": {"id": "c1", "attributes": {"loyalty_card": CARD}},
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
    # What a till's scanner reads from the screen is the voucher's code and the card number.
    assert scanned_barcodes(chromium) == [(CARD, [CARD])] + [(code, [code]) for code in codes]
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


def test_the_scan_check_catches_a_barcode_of_another_code(
    chromium: Browser,  # noqa: F811
    server: tuple[str, Any],  # noqa: F811
) -> None:
    base, engine = server
    first, second = seed(engine)
    chromium.send("Emulation.setDeviceMetricsOverride", **PHONE)
    chromium.open(f"{base}/loyalty/{sign_token(TokenPayload(customer_id='c1'), [b'test-key'])}")
    # The first voucher shown with the second one's barcode: the decoder must tell them apart.
    chromium.evaluate(
        "(() => { const imgs = document.querySelectorAll('#vouchers img');"
        " imgs[0].src = imgs[1].src; return imgs[0].decode(); })()"
    )
    scanned = dict(scanned_barcodes(chromium))
    assert scanned[first] == [second] and scanned[second] == [second]


def test_loyalty_page_refuses_a_forged_link(
    chromium: Browser,  # noqa: F811
    server: tuple[str, Any],  # noqa: F811
) -> None:
    base, _engine = server
    chromium.open(f"{base}/loyalty/{sign_token(TokenPayload(customer_id='c1'), [b'other'])}")
    # The browser asks for English: the refusal is in its language, and shows nothing else.
    assert "This link does not work" in chromium.text("main")
    assert "points" not in chromium.text("main")
