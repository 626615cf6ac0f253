"""Link rewriting for click tracking: which links, which never, and stable codes."""

from __future__ import annotations

from trouw.domain.measure.links import keep_as_is, link_code, rewrite, trackable

BASE = "https://trouw.example"
LINKS = {
    "unsubscribe": f"{BASE}/u/tok.mac",
    "preferences": f"{BASE}/preferences/tok2.mac2",
}
KEEP, PREFIXES = keep_as_is(BASE, LINKS)


def _track(url: str) -> str | None:
    return f"{BASE}/c/{link_code(b'k', 'm1', url)}" if trackable(url, KEEP, PREFIXES) else None


def test_html_links_are_rewritten_but_never_unsubscribe_preferences_or_mailto() -> None:
    html = (
        '<a href="https://shop.example/p?a=1&amp;b=2" class="b">Shop</a>'
        f'<a href="{LINKS["unsubscribe"]}">Uitschrijven</a>'
        f'<a href="{BASE}/preferences/other.mac">Voorkeuren</a>'
        '<a href="mailto:info@shop.example">Mail</a>'
        '<img src="https://shop.example/logo.png">'
    )
    out = rewrite(html, html=True, track=_track)
    code = link_code(b"k", "m1", "https://shop.example/p?a=1&b=2")
    assert f'<a href="{BASE}/c/{code}" class="b">Shop</a>' in out
    assert LINKS["unsubscribe"] in out and f"{BASE}/preferences/other.mac" in out
    assert "mailto:info@shop.example" in out
    assert 'src="https://shop.example/logo.png"' in out  # images are not links


def test_text_urls_are_rewritten_keeping_trailing_punctuation() -> None:
    text = f"Bekijk https://shop.example/tips. Uitschrijven: {LINKS['unsubscribe']}"
    out = rewrite(text, html=False, track=_track)
    code = link_code(b"k", "m1", "https://shop.example/tips")
    assert out == f"Bekijk {BASE}/c/{code}. Uitschrijven: {LINKS['unsubscribe']}"


def test_codes_are_stable_per_message_and_link_and_differ_otherwise() -> None:
    a = link_code(b"k", "m1", "https://shop.example/")
    assert a == link_code(b"k", "m1", "https://shop.example/") and len(a) == 22
    assert a != link_code(b"k", "m2", "https://shop.example/")
    assert a != link_code(b"other", "m1", "https://shop.example/")


def test_a_rewritten_message_is_not_wrapped_twice() -> None:
    once = rewrite('<a href="https://shop.example/">x</a>', html=True, track=_track)
    assert rewrite(once, html=True, track=_track) == once
