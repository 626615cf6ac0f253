"""An aiohttp app on 127.0.0.1 in its own thread, with scripted answers and recorded requests."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web


@dataclass
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, list[str]] = field(default_factory=dict)
    status: int = 0  # what the fake answered (0 while it is still hanging)


@dataclass
class ScriptedResponse:
    """An answer the fake gives instead of the normal one."""

    status: int = 200
    body: Any = None  # JSON-serialisable, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)
    # Sleep this long before answering: normally (no status or body given), so the client
    # times out although the request was processed; else with this answer, so the request
    # left and was not processed (a lookup then finds nothing).
    hang_seconds: float = 0.0
    # Held until the test sets this (then hang_seconds more): a request it keeps at the
    # provider for as long as it needs, e.g. while it cancels the run that sent it.
    release: threading.Event | None = None

    @property
    def holds(self) -> bool:
        return bool(self.hang_seconds) or self.release is not None

    async def hold(self) -> None:
        if self.release is not None:
            # Bounded, so a test that fails before releasing it does not keep the fake's thread.
            await asyncio.to_thread(self.release.wait, 300)
        await asyncio.sleep(self.hang_seconds)


class ThreadedFake:
    """Runs `make_app()` in a daemon thread with its own event loop, so sync tests, async
    tests and benchmarks can all use it. `url` is valid after start()."""

    def __init__(self, *, record: bool = True) -> None:
        self.record = record
        self.requests: list[RecordedRequest] = []
        self._script: deque[ScriptedResponse] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self.port = 0
        # Consulted when nothing is scripted: a random fault plan for reliability runs.
        self.plan: Callable[[], ScriptedResponse | None] | None = None
        self.in_progress = 0  # requests being answered now (a "send window" is open)

    # -- to be provided by subclasses ---------------------------------------------------
    def make_app(self) -> web.Application:
        raise NotImplementedError

    # -- scripting ------------------------------------------------------------------------
    def script(self, response: ScriptedResponse, *, count: int = 1) -> None:
        """Answer the next `count` requests with `response` (then behave normally again)."""
        with self._lock:
            self._script.extend(response for _ in range(count))

    def hang_next(self, seconds: float, *, count: int = 1) -> None:
        """Hold the next `count` requests for `seconds`, then process them normally."""
        self.script(ScriptedResponse(hang_seconds=seconds), count=count)

    def next_scripted(self) -> ScriptedResponse | None:
        with self._lock:
            if self._script:
                return self._script.popleft()
        return self.plan() if self.plan is not None else None

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()

    def _keep(self, recorded: RecordedRequest) -> None:
        if self.record:
            with self._lock:
                self.requests.append(recorded)

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(ready, failure), name=type(self).__name__, daemon=True
        )
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as exc:  # surfaced by start()
            failure.append(exc)
            ready.set()
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stopped = asyncio.Event()
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(runner.addresses[0][1])
        ready.set()
        await self._stopped.wait()
        await runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(5)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


async def record(request: web.Request, fake: ThreadedFake) -> RecordedRequest:
    """Read the whole request and keep it (before answering: it has left the client)."""
    body = await request.read()
    recorded = RecordedRequest(
        method=request.method,
        path=request.path,
        query=dict(request.query),
        headers=dict(request.headers),
        body=body,
    )
    fake._keep(recorded)
    return recorded


def scripted_answer(scripted: ScriptedResponse) -> web.Response:
    if scripted.body is None:
        return web.Response(status=scripted.status, headers=scripted.headers)
    return web.json_response(scripted.body, status=scripted.status, headers=scripted.headers)
