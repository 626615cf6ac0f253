"""Run the SendGrid and Twilio fakes in their own process: `python -m tests.fakes.serve`.

Prints one JSON line with the URLs and credentials, then serves until stdin closes or the
process is terminated (benchmarks keep the client and the fake on separate interpreters).
"""

from __future__ import annotations

import json
import signal
import sys
import threading

from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.twilio import FakeTwilio


def main() -> None:
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with FakeSendGrid(record=False) as sendgrid, FakeTwilio(record=False) as twilio:
        print(
            json.dumps(
                {
                    "sendgrid_url": sendgrid.url,
                    "sendgrid_api_key": sendgrid.api_key,
                    "twilio_url": twilio.url,
                    "twilio_account_sid": twilio.account_sid,
                    "twilio_auth_token": twilio.auth_token,
                }
            ),
            flush=True,
        )

        def wait_for_stdin_to_close() -> None:
            sys.stdin.read()
            done.set()

        threading.Thread(target=wait_for_stdin_to_close, daemon=True).start()
        done.wait()


if __name__ == "__main__":
    main()
