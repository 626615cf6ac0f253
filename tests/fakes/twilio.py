"""A fake Twilio Messages API (create and list) that speaks Twilio's JSON and error shapes."""

from __future__ import annotations

import base64
import re
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from tests.fakes.http import ScriptedResponse, ThreadedFake, record, scripted_answer

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")

# The messages Twilio gives for the codes Trouw classifies (https://www.twilio.com/docs/api/errors).
ERROR_MESSAGES = {
    20003: (401, "Authenticate"),
    20429: (429, "Too Many Requests"),
    21211: (400, "The 'To' number {to} is not a valid phone number."),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
}


def twilio_error(code: int, status: int, message: str) -> dict[str, Any]:
    """Twilio's legacy error body, which twilio-python turns into TwilioRestException."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class FakeTwilio(ThreadedFake):
    """POST /2010-04-01/Accounts/{sid}/Messages.json -> 201 with a message (sid SM...);
    GET of the same path lists sent messages filtered by To/From (for reconciliation)."""

    def __init__(
        self,
        *,
        account_sid: str = "AC" + "0" * 32,
        auth_token: str = "test-auth-token",
        record: bool = True,
    ) -> None:
        super().__init__(record=record)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messages: list[dict[str, Any]] = []
        # The StatusCallback of each created message, in the order of `messages`: how a
        # reliability run maps a message Twilio created back to our message key.
        self.callbacks: list[str | None] = []

    def fail_next(
        self,
        code: int,
        *,
        status: int | None = None,
        count: int = 1,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next `count` creates with Twilio error `code` (HTTP status from the
        code's usual one unless given); `retry_after` adds a Retry-After header."""
        usual_status, message = ERROR_MESSAGES.get(code, (400, "scripted error"))
        http_status = status or usual_status
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self.script(
            ScriptedResponse(
                status=http_status,
                body=twilio_error(code, http_status, message.format(to="+0")),
                headers=headers,
            ),
            count=count,
        )

    @property
    def forms(self) -> list[dict[str, str]]:
        """The form fields of every create request (first value of each)."""
        return [{k: v[0] for k, v in r.form.items()} for r in self.requests if r.method == "POST"]

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)
        app.router.add_get("/2010-04-01/Accounts/{sid}/Messages.json", self._list)
        return app

    def _authorised(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return (
            request.headers.get("Authorization") == f"Basic {expected}"
            and request.match_info["sid"] == self.account_sid
        )

    def _error(self, code: int, **values: str) -> web.Response:
        status, message = ERROR_MESSAGES[code]
        return web.json_response(
            twilio_error(code, status, message.format(**values)), status=status
        )

    async def _create(self, request: web.Request) -> web.Response:
        self.in_progress += 1
        try:
            recorded = await record(request, self)
            recorded.form = parse_qs(recorded.body.decode(), keep_blank_values=True)
            response = await self._answer(request, {k: v[0] for k, v in recorded.form.items()})
            recorded.status = response.status
            return response
        finally:
            self.in_progress -= 1

    async def _answer(self, request: web.Request, form: dict[str, str]) -> web.Response:
        if not self._authorised(request):
            return self._error(20003)
        scripted = self.next_scripted()
        if scripted is not None and scripted.holds:
            await scripted.hold()
            if scripted.status == 200 and scripted.body is None:
                scripted = None  # held, then processed: accepted, but the client gave up
        if scripted is not None:
            return scripted_answer(scripted)
        to = form.get("To", "")
        if not to:
            return self._error(21604)
        if not _E164.match(to):
            return self._error(21211, to=to)
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return self._error(21603)
        if not form.get("Body") and not form.get("MediaUrl") and not form.get("ContentSid"):
            return self._error(21602)
        validity = form.get("ValidityPeriod")
        # The real code for this is not documented where we looked; 20001 is "invalid parameter".
        if validity is not None and not (validity.isdigit() and 1 <= int(validity) <= 36000):
            return web.json_response(
                twilio_error(20001, 400, "ValidityPeriod must be between 1 and 36000"),
                status=400,
            )
        message = self._message(form)
        with self._lock:
            self.messages.append(message)
            self.callbacks.append(form.get("StatusCallback"))
        return web.json_response(message, status=201)

    def _message(self, form: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC))
        service = form.get("MessagingServiceSid")
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": form.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            # With a Messaging Service the first status is "accepted", without one "queued".
            "status": "accepted" if service and not form.get("From") else "queued",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": form.get("To"),
            "uri": uri,
        }

    async def _list(self, request: web.Request) -> web.Response:
        await record(request, self)
        if not self._authorised(request):
            return self._error(20003)
        to, sender = request.query.get("To"), request.query.get("From")
        found = [
            m
            for m in reversed(self.messages)
            if (to is None or m["to"] == to) and (sender is None or m["from"] == sender)
        ]
        path = request.path
        return web.json_response(
            {
                "messages": found,
                "end": max(len(found) - 1, 0),
                "first_page_uri": path,
                "next_page_uri": None,
                "page": 0,
                "page_size": 50,
                "previous_page_uri": None,
                "start": 0,
                "uri": path,
            }
        )
