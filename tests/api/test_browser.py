"""Headless Chromium clicks and types through the unsubscribe and preference pages (DevTools)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlmodel import Session, select
from websockets.sync.client import ClientConnection, connect

from tests.api.conftest import ApiSettings, add_customer, consents, events, suppressions
from trouw.domain.db.engine import make_engine, migrate
from trouw.domain.db.models import Customer, ProfileChange
from trouw.domain.tokens import TokenPayload, sign_token
from trouw.ways_in.api.app import create_app

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """A page in headless Chromium, driven over the DevTools protocol."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, event in enumerate(self.events):
                if event.get("method") == method:
                    del self.events[: index + 1]
                    return
            try:
                self.events.append(
                    json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                )
            except TimeoutError:
                break
        raise TimeoutError(f"no {method} within {timeout}s")

    def open(self, url: str) -> None:
        self.events.clear()
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def click(self, selector: str, *, navigates: bool = False) -> None:
        """A real mouse click in the middle of the element, as a person makes it."""
        box = self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " el.scrollIntoView({block: 'center'}); const r = el.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        x, y = box
        self.events.clear()
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
        if navigates:
            self.wait_for("Page.loadEventFired")

    def text(self, selector: str) -> str:
        return str(self.evaluate(f"document.querySelector({json.dumps(selector)}).textContent"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def chromium() -> Iterator[Browser]:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install -y chromium): CI must run this")
        pytest.skip("chromium is not installed")
    profile = Path(tempfile.mkdtemp(prefix="trouw-chromium-"))
    process = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and len(active.read_text().splitlines()) >= 2):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(active.read_text().splitlines()[0])
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list").json()
        target = next(p for p in pages if p["type"] == "page")
        with connect(target["webSocketDebuggerUrl"], max_size=None) as ws:
            browser = Browser(ws)
            browser.send("Page.enable")
            yield browser
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def server(tmp_path: Path, api_settings: ApiSettings) -> Iterator[tuple[str, Any]]:
    """The API on a free loopback port, served by uvicorn in a thread, over SQLite."""
    engine = make_engine(f"sqlite:///{tmp_path / 'browser.db'}")
    migrate(engine)
    add_customer(engine, "c1", opt_in={"email": True})
    port = _free_port()
    config = uvicorn.Config(
        create_app(api_settings, engine), host="127.0.0.1", port=port, log_level="warning"
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", engine
    uv.should_exit = True
    thread.join(timeout=10)
    engine.dispose()


def _token(**fields: Any) -> str:
    return sign_token(TokenPayload(customer_id="c1", **fields), [b"test-key"])


def test_click_unsubscribe(chromium: Browser, server: tuple[str, Any]) -> None:
    base, engine = server
    chromium.open(f"{base}/u/{_token(channel='email', message_key='run-1:tip:email')}")
    assert "Wil je geen e-mails meer ontvangen" in chromium.text("main")
    assert suppressions(engine) == []
    chromium.click("#unsubscribe", navigates=True)
    assert chromium.text("#message") == "Je ontvangt geen e-mails meer van Tuincentrum De Linde."
    assert {(s.channel, s.reason) for s in suppressions(engine)} == {("email", "unsubscribe")}
    latest = {(r.channel, r.scope): r.granted for r in consents(engine)}
    assert latest == {("email", "promotional"): False, ("email", "service"): False}
    assert [e.type for e in events(engine)] == ["unsubscribe"]


def test_click_preferences(chromium: Browser, server: tuple[str, Any]) -> None:
    base, engine = server
    chromium.open(f"{base}/preferences/{_token()}")
    assert chromium.evaluate("document.querySelector('#email_promotional').checked") is True
    chromium.click("#email_promotional")
    assert chromium.evaluate("document.querySelector('#email_promotional').checked") is False
    chromium.click("#save", navigates=True)
    assert chromium.text("#saved") == "Je voorkeuren zijn opgeslagen."
    assert chromium.evaluate("document.querySelector('#email_promotional').checked") is False
    assert chromium.evaluate("document.querySelector('#email_service').checked") is True
    new = [(r.channel, r.scope, r.granted, r.source) for r in consents(engine) if r.source != "pos"]
    assert new == [("email", "promotional", False, "preferences")]


def _screenshot(browser: Browser, path: Path) -> Path:
    """A PNG of the page as a person sees it (TROUW_SCREENSHOT_DIR keeps it for a look)."""
    shot = browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.read_bytes().startswith(b"\x89PNG")
    return path


def _type(browser: Browser, selector: str, text: str) -> None:
    """Focus a field by clicking it and type, key by key, as a person does."""
    browser.click(selector)
    for char in text:
        browser.send("Input.dispatchKeyEvent", type="keyDown", text=char, key=char)
        browser.send("Input.dispatchKeyEvent", type="keyUp", key=char)


def test_fill_in_the_birthday_without_javascript(
    chromium: Browser, server: tuple[str, Any], tmp_path: Path
) -> None:
    base, engine = server
    shots = Path(os.environ.get("TROUW_SCREENSHOT_DIR") or tmp_path)
    # The page must work for people who have JavaScript off: so must this test's page.
    chromium.send("Emulation.setScriptExecutionDisabled", value=True)
    chromium.open(f"{base}/preferences/{_token()}")
    assert chromium.evaluate("document.querySelector('#birthday').value") == ""
    assert chromium.evaluate("document.scripts.length") == 0
    # The date field's segments follow the browser's locale (en-US: month, day, year).
    _type(chromium, "#birthday", "04241979")
    assert chromium.evaluate("document.querySelector('#birthday').value") == "1979-04-24"
    _type(chromium, "#first_name", "Bart")
    chromium.click("#preferred_channel_sms")
    _screenshot(chromium, shots / "preferences-filled-in.png")
    chromium.click("#save", navigates=True)
    assert chromium.text("#saved") == "Je voorkeuren zijn opgeslagen."
    assert chromium.evaluate("document.querySelector('#birthday').value") == "1979-04-24"
    assert chromium.evaluate("document.querySelector('#preferred_channel_sms').checked") is True
    _screenshot(chromium, shots / "preferences-saved.png")
    with Session(engine) as session:
        stored = session.get(Customer, "c1")
        changes = session.exec(select(ProfileChange).where(ProfileChange.source == "preferences"))
        fields = sorted(change.field for change in changes)
    assert stored is not None and stored.birthday == date(1979, 4, 24)
    assert (stored.first_name, stored.preferred_channel) == ("Bart", "sms")
    assert fields == ["birthday", "first_name", "preferred_channel"]
    assert [e.type for e in events(engine)] == ["register"]


def test_a_future_birthday_is_refused_on_the_page(
    chromium: Browser, server: tuple[str, Any], tmp_path: Path
) -> None:
    base, engine = server
    shots = Path(os.environ.get("TROUW_SCREENSHOT_DIR") or tmp_path)
    chromium.open(f"{base}/preferences/{_token()}")
    # The field's own max stops a future date in this browser; an older browser shows a plain
    # text field, and the server refuses it: post the form as such a browser would.
    chromium.evaluate(
        "(() => { const el = document.querySelector('#birthday');"
        " el.type = 'text'; el.value = '2999-01-01'; })()"
    )
    chromium.click("#save", navigates=True)
    assert chromium.text("#birthday-error") == "Een verjaardag kan niet in de toekomst liggen."
    assert chromium.text("#not-saved").startswith("Er is niets opgeslagen.")
    _screenshot(chromium, shots / "preferences-refused.png")
    with Session(engine) as session:
        stored = session.get(Customer, "c1")
    assert stored is not None and stored.birthday is None
    assert events(engine) == []
