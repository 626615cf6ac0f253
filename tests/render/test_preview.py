"""`trouw preview` writes the rendered files and reports size and SMS segments."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trouw.domain.render import TemplateStore
from trouw.domain.render.preview import chromium_path, preview


def test_preview_writes_html_text_and_sms(store: TemplateStore, tmp_path: Path) -> None:
    results = preview(store, "refill_reminder", tmp_path, locale="fr-BE")
    email, sms = results
    assert email.channel == "email" and sms.channel == "sms"
    assert email.subject and email.preheader and email.size_bytes > 5_000
    html = (tmp_path / "refill_reminder.fr-BE.html").read_text(encoding="utf-8")
    assert len(html.encode()) == email.size_bytes
    assert (tmp_path / "refill_reminder.fr-BE.txt").read_text(encoding="utf-8").strip()
    assert sms.sms_segments == 2 and sms.sms_encoding == "GSM-7"
    assert (tmp_path / "refill_reminder.fr-BE.sms.txt").is_file()
    assert email.png is None


def test_preview_of_one_channel(store: TemplateStore, tmp_path: Path) -> None:
    [result] = preview(store, "delivery_notice", tmp_path, channel="sms", locale="nl-NL")
    assert result.locale == "nl-NL" and result.sms_segments == 1


@pytest.mark.slow
def test_preview_png_screenshot(store: TemplateStore, tmp_path: Path) -> None:
    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install -y chromium): CI must run this")
        pytest.skip("chromium is not installed")
    [result] = preview(store, "birthday", tmp_path, locale="nl-BE", png=True)
    assert result.png is not None
    assert result.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
