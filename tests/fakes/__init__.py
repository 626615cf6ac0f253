"""Local fakes that speak SendGrid v3, Twilio REST and SMTP, for tests and benchmarks."""

from tests.fakes.http import RecordedRequest, ScriptedResponse
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.smtp import FakeSmtpServer, ReceivedMail
from tests.fakes.twilio import FakeTwilio

__all__ = [
    "FakeSendGrid",
    "FakeSmtpServer",
    "FakeTwilio",
    "ReceivedMail",
    "RecordedRequest",
    "ScriptedResponse",
]
