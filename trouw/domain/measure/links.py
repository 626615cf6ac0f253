"""Click tracking: links in a message rewritten to `/c/{code}` on the API, one code per link.

Pure. A code is an HMAC of message key and target URL (128 bits, base64url): unguessable,
the same on every render of the message (a retried send writes the same rows), and it names a
stored link, so the redirect can only ever lead where the message itself pointed: no open
redirect. Links that must stay as they are: the unsubscribe and preference links (a customer
must be able to leave without being tracked, and providers check them), mailto:/tel:, and
anything that is not http(s).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Container
from urllib.parse import urlsplit

_CONTEXT = b"trouw.click.v1:"
# href="..." in an anchor (MJML output quotes every attribute with double quotes).
_HREF = re.compile(r'(<a\b[^>]*?\bhref=")(https?://[^"\s]+)(")', re.IGNORECASE)
# A URL in plain text (SMS, the text part of an email): up to whitespace or a closing bracket.
_TEXT_URL = re.compile(r"https?://[^\s<>\"')\]]+")
MAX_URL = 2000
# The click id the redirect adds to the target's query; a webshop or till that keeps it in the
# customer's session and sends it back on the order links that order to the click (exactly).
CLICK_PARAM = "trouw_click"


def link_code(key: bytes, message_key: str, url: str) -> str:
    digest = hmac.new(key, _CONTEXT + f"{message_key}\x1f{url}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:16]).rstrip(b"=").decode()


def trackable(url: str, keep: Container[str], keep_prefixes: tuple[str, ...]) -> bool:
    if url in keep or url.startswith(keep_prefixes) or len(url) > MAX_URL:
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def rewrite(
    content: str,
    *,
    html: bool,
    track: Callable[[str], str | None],
) -> str:
    """`content` with each trackable link replaced by what `track` returns (None: keep it).

    HTML: only anchors' href; their text is left alone (a visible URL stays readable).
    Text: every http(s) URL.
    """
    if html:

        def anchor(match: re.Match[str]) -> str:
            # MJML escapes & as &amp; inside attributes: track the URL the browser would open.
            url = match.group(2).replace("&amp;", "&")
            new = track(url)
            return match.group(0) if new is None else f"{match.group(1)}{new}{match.group(3)}"

        return _HREF.sub(anchor, content)

    def bare(match: re.Match[str]) -> str:
        url = match.group(0).rstrip(".,;:!?")
        tail = match.group(0)[len(url) :]
        new = track(url)
        return match.group(0) if new is None else new + tail

    return _TEXT_URL.sub(bare, content)


def keep_as_is(public_url: str, links: dict[str, str]) -> tuple[set[str], tuple[str, ...]]:
    """Links never rewritten: unsubscribe and preferences (exact, and by their path), Trouw's own
    "view in browser" page, and the redirect itself (a message is never wrapped twice)."""
    base = public_url.rstrip("/")
    names = ("unsubscribe", "preferences", "view_in_browser")
    exact = {links[name] for name in names if name in links}
    return exact, (f"{base}/u/", f"{base}/preferences/", f"{base}/m/", f"{base}/c/")
