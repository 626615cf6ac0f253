"""A fake SendGrid v3 API: Mail Send (checks what the real API checks, records every request,
never deduplicates) and the Email Activity API's message filter, for reconciliation."""

from __future__ import annotations

import json
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.http import ScriptedResponse, ThreadedFake, record, scripted_answer

_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
# Headers SendGrid refuses in `headers` because it sets them itself.
_RESERVED_HEADERS = {"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
                     "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc",
                     "bcc"}  # fmt: skip
MAX_BODY_BYTES = 30 * 1024 * 1024
# The Email Activity query language, as far as Trouw uses it: one `field="value"` or
# `unique_args['name']="value"` condition, optionally in parentheses (see tests/fakes/README.md).
_ACTIVITY_QUERY = re.compile(
    r"""^\(?\s*(?:unique_args\['(?P<arg>[^']+)'\]|(?P<field>[a-z_]+))\s*=\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*\)?$"""
)
_ACTIVITY_FIELDS = {"msg_id", "to_email", "from_email", "subject", "status"}


def sendgrid_error(message: str, field: str | None = None) -> dict[str, Any]:
    """SendGrid's error body: {"errors": [{"message", "field", "help"}]}."""
    return {"errors": [{"message": message, "field": field, "help": None}]}


class FakeSendGrid(ThreadedFake):
    """POST /v3/mail/send: 202 and X-Message-Id for a valid request; 400/401/413 for what the
    real API refuses; scripted 429/500/hangs through the helpers below."""

    def __init__(self, *, api_key: str = "SG.test-key", record: bool = True) -> None:
        super().__init__(record=record)
        self.api_key = api_key
        self.message_ids: list[str] = []
        # What the Email Activity API knows: one entry per accepted message (per recipient).
        self.activity: list[dict[str, Any]] = []
        self.activity_enabled = True  # False: the account lacks the paid add-on (403)

    # -- scripting helpers ----------------------------------------------------------------
    def fail_next(
        self,
        status: int,
        *,
        count: int = 1,
        message: str = "scripted failure",
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `count` requests with `status` and a SendGrid error body."""
        self.script(
            ScriptedResponse(
                status=status, body=sendgrid_error(message, field), headers=dict(headers or {})
            ),
            count=count,
        )

    def rate_limit_next(self, *, reset_in: float = 30.0, count: int = 1) -> int:
        """429 with SendGrid's X-RateLimit-* headers; returns the reset epoch it announced."""
        reset = int(time.time() + reset_in)
        self.fail_next(
            429,
            count=count,
            message="too many requests",
            headers={
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
            },
        )
        return reset

    @property
    def mails(self) -> list[dict[str, Any]]:
        """The JSON bodies of every accepted or refused request, in order."""
        return [r.json for r in self.requests if r.json is not None]

    # -- the API --------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES + 1024)
        app.router.add_post("/v3/mail/send", self._mail_send)
        app.router.add_get("/v3/messages", self._filter_messages)
        return app

    async def _filter_messages(self, request: web.Request) -> web.Response:
        """GET /v3/messages?query=...&limit=N, answered in the shape of SendGrid's OpenAPI
        (twilio/sendgrid-oai, spec/yaml/tsg_email_activity_v3.yaml)."""
        await record(request, self)
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response(
                sendgrid_error("The provided authorization grant is invalid, expired, or revoked"),
                status=401,
            )
        if not self.activity_enabled:
            return web.json_response(sendgrid_error("access forbidden"), status=403)
        match = _ACTIVITY_QUERY.match(request.query.get("query", "").strip())
        if match is None or (match["field"] and match["field"] not in _ACTIVITY_FIELDS):
            return web.json_response(
                sendgrid_error("invalid syntax: the query cannot be parsed"), status=400
            )
        try:
            limit = int(request.query.get("limit", "10"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            return web.json_response(sendgrid_error("limit must be between 1 and 1000"), status=400)
        value = re.sub(r"\\(.)", r"\1", match["value"])
        if match["arg"]:
            found = [m for m in self.activity if m["unique_args"].get(match["arg"]) == value]
        else:
            found = [m for m in self.activity if m[match["field"]] == value]
        shown = [
            {key: entry[key] for key in entry if key != "unique_args"} for entry in found[:limit]
        ]
        return web.json_response({"messages": shown})

    async def _mail_send(self, request: web.Request) -> web.Response:
        self.in_progress += 1
        try:
            recorded = await record(request, self)
            response = await self._answer(request, recorded.body, recorded)
            recorded.status = response.status
            return response
        finally:
            self.in_progress -= 1

    async def _answer(self, request: web.Request, body: bytes, recorded: Any) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response(
                sendgrid_error("The provided authorization grant is invalid, expired, or revoked"),
                status=401,
            )
        try:
            recorded.json = json.loads(body)
        except ValueError:
            return web.json_response(
                sendgrid_error("Bad Request: the JSON payload cannot be parsed"), status=400
            )
        scripted = self.next_scripted()
        if scripted is not None and scripted.holds:
            await scripted.hold()
            if scripted.status == 200 and scripted.body is None:
                scripted = None  # held, then processed: accepted, but the client gave up
        if scripted is not None:
            return scripted_answer(scripted)
        if len(body) > MAX_BODY_BYTES:
            return web.json_response(
                sendgrid_error("The JSON payload you have included in your request is too large."),
                status=413,
            )
        problem = validate_mail(recorded.json)
        if problem is not None:
            return web.json_response(sendgrid_error(problem[1], problem[0]), status=400)
        message_id = secrets.token_urlsafe(16)
        self.message_ids.append(message_id)
        self._remember(recorded.json, message_id)
        return web.Response(status=202, headers={"X-Message-Id": message_id})

    def _remember(self, mail: dict[str, Any], message_id: str) -> None:
        """One Email Activity entry per recipient; msg_id extends X-Message-Id, as SendGrid's
        per-recipient ids do (support article 35804743679259)."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for p, personalization in enumerate(mail["personalizations"]):
            unique_args = {
                **(mail.get("custom_args") or {}),
                **personalization.get("custom_args", {}),
            }
            for t, recipient in enumerate(personalization["to"]):
                with self._lock:
                    self.activity.append(
                        {
                            "from_email": mail["from"]["email"],
                            "msg_id": f"{message_id}.filter0001p1mdw1-{p}-{t}.0",
                            "subject": personalization.get("subject") or mail.get("subject", ""),
                            "to_email": recipient["email"],
                            "status": "processed",
                            "opens_count": 0,
                            "clicks_count": 0,
                            "last_event_time": now,
                            "unique_args": unique_args,
                        }
                    )


def validate_mail(mail: Any) -> tuple[str | None, str] | None:
    """(field, message) of the first thing the v3 API would refuse, or None."""
    if not isinstance(mail, dict):
        return None, "The request body must be a JSON object."
    personalizations = mail.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        return "personalizations", "The personalizations field is required."
    for p, personalization in enumerate(personalizations):
        to = personalization.get("to") if isinstance(personalization, dict) else None
        if not isinstance(to, list) or not to:
            return f"personalizations.{p}.to", "The to array is required."
        for t, recipient in enumerate(to):
            address = recipient.get("email") if isinstance(recipient, dict) else None
            if not isinstance(address, str) or not _ADDRESS.match(address):
                return f"personalizations.{p}.to.{t}.email", "Does not contain a valid address."
    sender = mail.get("from")
    if not isinstance(sender, dict) or not _ADDRESS.match(str(sender.get("email", ""))):
        return "from.email", "The from email does not contain a valid address."
    has_template = "template_id" in mail
    if not has_template and not (
        mail.get("subject")
        or all(isinstance(p, dict) and p.get("subject") for p in personalizations)
    ):
        return "subject", "The subject is required."
    content = mail.get("content")
    if not has_template:
        if not isinstance(content, list) or not content:
            return "content", "The content field is required."
        types = [c.get("type") if isinstance(c, dict) else None for c in content]
        if any(not isinstance(c, dict) or not c.get("value") for c in content):
            return "content", "The content value must be a string at least one character in length."
        if "text/plain" in types and types[0] != "text/plain":
            return "content", "If present, text/plain content must be first."
    categories = mail.get("categories", [])
    if not isinstance(categories, list) or len(categories) > 10:
        return "categories", "You may not have more than 10 categories per request."
    if any(not isinstance(c, str) or len(c) > 255 for c in categories):
        return "categories", "A category cannot exceed 255 characters."
    if len(set(categories)) != len(categories):
        return "categories", "Categories must be unique."
    for key, value in (mail.get("custom_args") or {}).items():
        if not isinstance(value, str):
            return f"custom_args.{key}", "Custom args values must be strings."
    for key, value in (mail.get("headers") or {}).items():
        if key.lower() in _RESERVED_HEADERS:
            return f"headers.{key}", f"The {key} header is reserved."
        if not isinstance(value, str):
            return f"headers.{key}", "Header values must be strings."
    return None
