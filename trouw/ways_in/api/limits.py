"""Intake limits on every request body: a size cap (413) and a JSON nesting cap (422)."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trouw.ways_in.api.errors import error_body

# A JSON string as one token (escapes included), or one bracket: brackets inside strings are text.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_OPEN = frozenset(b"[{")
_WHITESPACE = b" \t\r\n"


def too_deep(body: bytes, limit: int) -> bool:
    """Whether JSON `body` nests arrays/objects deeper than `limit`, found without parsing it."""
    depth = 0
    for token in _TOKENS.finditer(body):
        first = token.group()[0]
        if first in _OPEN:
            depth += 1
            if depth > limit:
                return True
        elif first != ord('"'):
            depth -= 1
    return False


def size_message(limit: int) -> str:
    return f"the request body is larger than the limit of {limit} bytes"


def depth_message(limit: int) -> str:
    return f"the JSON body is nested deeper than the limit of {limit} levels"


class BodyLimits:
    """ASGI middleware: reads each body once, refuses it when too large or too deeply nested.

    A body that passes is handed on unchanged, so signature checks still see the raw bytes. The
    declared Content-Length is checked before reading anything, the bytes actually read after.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_depth: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _answer(send, 413, size_message(self.max_bytes))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _answer(send, 413, size_message(self.max_bytes))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body.lstrip(_WHITESPACE)[:1] in (b"[", b"{") and too_deep(body, self.max_depth):
            await _answer(send, 422, depth_message(self.max_depth))
            return
        await self.app(scope, _replay(body, receive), send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as Starlette expects

    return replay


async def _answer(send: Send, status: int, message: str) -> None:
    payload: Any = error_body(message)
    content = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
                # The rest of a refused body is never read: the client must not reuse this connection.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})
