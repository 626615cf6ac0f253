"""Headless Chromium opens the "view in browser" link of an email sent over SMTP."""

from __future__ import annotations

import base64
import os
import shutil
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy.engine import Engine

from tests.api.test_browser import Browser, _free_port, chromium  # noqa: F401 (fixture)
from tests.api.test_hosted import base_settings, send_confirmation, view_path
from tests.fakes import FakeSmtpServer
from trouw.domain.db.engine import make_engine, migrate
from trouw.settings import Settings
from trouw.ways_in.api.app import create_app

pytestmark = pytest.mark.slow


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer() as fake:
        yield fake


@pytest.fixture
def served(tmp_path: Path, smtp: FakeSmtpServer) -> Iterator[tuple[str, Settings, Engine]]:
    """The API on a free loopback port (uvicorn in a thread) over a SQLite ledger."""
    settings = base_settings(
        tmp_path,
        email_provider="smtp",
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_starttls=False,
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'hosted.db'}")
    migrate(engine)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, engine), host="127.0.0.1", port=_free_port(), log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}", settings, engine
    server.should_exit = True
    thread.join(timeout=10)
    engine.dispose()


async def test_view_in_browser_shows_the_sent_email(
    chromium: Browser,  # noqa: F811
    served: tuple[str, Settings, Engine],
    smtp: FakeSmtpServer,
    tmp_path: Path,
) -> None:
    base, settings, engine = served
    await send_confirmation(settings, engine)
    [mail] = smtp.received
    html_part = mail.message.get_body(("html",))
    assert html_part is not None
    path = view_path(str(html_part.get_content()))

    chromium.send(
        "Emulation.setDeviceMetricsOverride",
        width=800,
        height=1100,
        deviceScaleFactor=1,
        mobile=False,
    )
    chromium.open(f"{base}{path}")

    assert chromium.evaluate("document.documentElement.lang") == "fr-BE"
    assert chromium.evaluate("document.title") == mail.message["Subject"]
    text = chromium.text("body")
    assert "Zoë" in text and "Gazonmest" in text and "24,95" in text
    # The email is 600 px wide and centred: nothing spills out of an 800 px window.
    assert chromium.evaluate("document.documentElement.scrollWidth") <= 800
    links = chromium.evaluate("[...document.querySelectorAll('a')].map(a => a.href)")
    assert f"https://trouw.example{path}" in links  # the copy links to itself, as the email did
    shot = base64.b64decode(chromium.send("Page.captureScreenshot", format="png")["data"])
    assert png_size(shot) == (800, 1100)
    (tmp_path / "hosted-copy.png").write_bytes(shot)
    if os.environ.get("TROUW_SCREENSHOTS"):  # for a person to look at
        shutil.copy(tmp_path / "hosted-copy.png", Path(os.environ["TROUW_SCREENSHOTS"]))

    chromium.open(f"{base}/m/{path.removeprefix('/m/')[:-3]}xyz")
    assert "Zoë" not in chromium.text("body")
    assert chromium.evaluate("document.querySelector('h1').textContent") in {
        "Deze e-mail is niet meer online",
        "This email is no longer online",
        "Cet e-mail n'est plus en ligne",
    }
