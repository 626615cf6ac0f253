"""Runs the stack in one process: the embedded Temporal dev server, the worker, the API, the relay."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.process
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from temporalio.client import Client

from activities.services import Services
from trouw.domain.content import watch_content
from trouw.domain.db.engine import get_engine
from trouw.domain.publish import PublishedContent, watch_published
from trouw.settings import Settings
from trouw.stack.allocator import cap_arenas, fix_mmap_threshold, trim_forever
from trouw.stack.metrics import (
    WORKER_RECYCLES,
    serve_worker_metrics,
    temporal_runtime_with_metrics,
)
from trouw.stack.presence import report_presence
from trouw.stack.recycle import (
    RECYCLE_EXIT_CODE,
    RECYCLES_VARIABLE,
    recycles_so_far,
    watch_memory,
)
from trouw.stack.temporal import (
    DevServer,
    TemporalError,
    connect,
    port_free,
    register_search_attributes,
    start_dev_server,
    wait_for_port,
)

log = logging.getLogger("trouw")
# The worker's graceful shutdown is 10 s (trouw/stack/worker.py); its process gets that and a margin.
WORKER_STOP_SECONDS = 30


@dataclass
class Stack:
    settings: Settings
    client: Client
    services: Services
    server: DevServer | None

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"


async def temporal_client(settings: Settings) -> tuple[Client, DevServer | None]:
    """Connect to TEMPORAL_ADDRESS, or to the embedded server (started here if not running)."""
    server = None
    if settings.embedded_temporal and port_free(settings.temporal_port):
        server = await asyncio.to_thread(start_dev_server, settings)
        try:
            await wait_for_port(
                "127.0.0.1", settings.temporal_port, within=60, process=server.process
            )
        except TemporalError:
            server.stop()
            raise
    try:
        client = await connect(settings)
        await register_search_attributes(client, settings.temporal_namespace)
    except BaseException:
        if server is not None:
            server.stop()
        raise
    return client, server


def install_stop_handlers(stop: asyncio.Event, on_signal: Callable[[], None] | None = None) -> None:
    """SIGTERM and SIGINT set `stop` (after calling `on_signal`)."""
    loop = asyncio.get_running_loop()

    def signalled() -> None:
        if on_signal is not None:
            on_signal()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, signalled)


def _worker_process_main(settings: Settings, log_level: int, recycles: int = 0) -> None:
    """The worker process of `trouw up`: worker and relay, on the server the parent started.
    Exits with RECYCLE_EXIT_CODE when it drained to be recycled (the parent starts another)."""
    from trouw.stack.logs import configure_logging

    os.environ[RECYCLES_VARIABLE] = str(recycles)
    configure_logging(verbose=log_level <= logging.INFO, log_format=settings.log_format)
    recycled = False
    with contextlib.suppress(KeyboardInterrupt):
        recycled = asyncio.run(_worker_child(settings, os.getppid()))
    if recycled:
        logging.shutdown()
        os._exit(RECYCLE_EXIT_CODE)


async def _worker_child(settings: Settings, parent: int) -> bool:
    stop = asyncio.Event()

    async def stop_when_orphaned() -> None:
        # A parent killed without a chance to stop us (SIGKILL): do not run on alone.
        while os.getppid() == parent:  # noqa: ASYNC110 - no event tells of a parent's death
            await asyncio.sleep(2)
        log.warning("the `trouw up` process is gone: stopping the worker")
        stop.set()

    watchdog = asyncio.create_task(stop_when_orphaned())
    try:
        return await run_stack(settings, api=False, worker=True, stop=stop)
    finally:
        watchdog.cancel()


def start_worker_process(
    settings: Settings, *, recycles: int = 0
) -> multiprocessing.process.BaseProcess:
    """The worker in a process of its own, so that it and the API each have a core.

    Spawned, not forked: the parent already runs an event loop and Temporal's runtime threads.
    The child connects to the dev server this process started (its port is taken by then).
    """
    process = multiprocessing.get_context("spawn").Process(
        target=_worker_process_main,
        args=(settings, logging.getLogger().getEffectiveLevel(), recycles),
        name="trouw-worker",
    )
    process.start()
    return process


@dataclass
class WorkerProcess:
    """`trouw up`'s worker child: the one running now, replaced when it recycles itself."""

    settings: Settings
    process: multiprocessing.process.BaseProcess
    recycles: int = 0


async def _watch_worker(child: WorkerProcess, stop: asyncio.Event) -> None:
    while True:
        await asyncio.to_thread(child.process.join)
        if child.process.exitcode == RECYCLE_EXIT_CODE and not stop.is_set():
            # It drained above its memory mark (trouw/stack/recycle.py): a fresh one takes over.
            child.recycles += 1
            log.warning("starting a fresh worker process (recycle %d)", child.recycles)
            child.process = await asyncio.to_thread(
                start_worker_process, child.settings, recycles=child.recycles
            )
            continue
        if child.process.exitcode in (0, RECYCLE_EXIT_CODE):
            stop.set()  # it stopped cleanly: Ctrl-C reached it first; the rest follows
            return
        raise TemporalError(
            f"the worker process stopped (exit code {child.process.exitcode}); see the lines above"
        )


async def _stop_worker(process: multiprocessing.process.BaseProcess) -> None:
    """SIGTERM: the worker finishes in-flight activities (graceful timeout), then exits."""
    if process.is_alive():
        process.terminate()
    await asyncio.to_thread(process.join, WORKER_STOP_SECONDS)
    if process.is_alive():
        log.warning("the worker process did not stop in %d s: killing it", WORKER_STOP_SECONDS)
        process.kill()
        await asyncio.to_thread(process.join)


async def run_stack(
    settings: Settings,
    *,
    api: bool = True,
    worker: bool = True,
    worker_process: bool = False,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[Stack], Awaitable[None]] | None = None,
) -> bool:
    """Run until stop is set (SIGTERM and Ctrl-C set it), then shut everything down in order.

    `worker_process` (with api and worker): the worker and relay run in a child process, the
    API in this one (`trouw up`); one Python process cannot use more than one core.

    True when a worker in this process stopped to be recycled (worker_recycle_rss_mib): the
    caller starts it afresh (trouw/stack/recycle.py); False for every other stop.
    """
    from trouw.domain.loyalty.sweep import sweep_forever
    from trouw.domain.measure.rollup import fold_forever
    from trouw.stack.relay import Listeners, relay_forever
    from trouw.stack.runs import sync_forever
    from trouw.stack.worker import build_worker

    stop = stop or asyncio.Event()
    # A stop asked for by a signal wins over a recycle under way: the worker then stays stopped.
    signalled = False

    def on_signal() -> None:
        nonlocal signalled
        signalled = True

    install_stop_handlers(stop, on_signal)
    # The worker in this process, or (worker_process) in a child that serves its own metrics.
    in_process = not (worker_process and api)
    if worker and in_process:
        # Before the worker's threads exist: the heaps they would each get are capped.
        cap_arenas(settings.worker_malloc_arenas)
        fix_mmap_threshold(settings.worker_malloc_mmap_threshold_kib)
    if api and not port_free(settings.api_port, settings.api_host):
        raise TemporalError(
            f"port {settings.api_port} is already taken: stop what uses it or set TROUW_API_PORT"
        )
    if worker and in_process and settings.worker_metrics_port is not None:
        if not port_free(settings.worker_metrics_port, settings.worker_metrics_host):
            raise TemporalError(
                f"port {settings.worker_metrics_port} is already taken: set "
                "TROUW_WORKER_METRICS_PORT to a free port (each worker needs its own)"
            )
    engine = await asyncio.to_thread(get_engine, settings.effective_database_url)
    # Before the first client: the Temporal runtime's metrics are fixed when it is made.
    temporal_runtime_with_metrics()
    client, server = await temporal_client(settings)
    if worker and in_process and settings.worker_metrics_port is not None:
        # The recycles before this process, counted before the first scrape can read them.
        WORKER_RECYCLES.inc(recycles_so_far())
        serve_worker_metrics(settings.worker_metrics_host, settings.worker_metrics_port)
    services = Services.from_settings(settings, engine=engine)
    stack = Stack(settings, client, services, server)
    tasks: list[asyncio.Task[None]] = []
    uvicorn_server = None
    child = None
    recycled = False

    def recycle(rss: float) -> None:
        nonlocal recycled
        recycled = True
        log.warning(
            "worker RSS %.1f MiB is above worker_recycle_rss_mib %d: draining (no new tasks, "
            "in-flight ones finish), then a fresh worker process takes over (recycle %d)",
            rss,
            settings.worker_recycle_rss_mib,
            recycles_so_far() + 1,
        )
        stop.set()

    try:
        if worker and not in_process:
            child = WorkerProcess(settings, await asyncio.to_thread(start_worker_process, settings))
            tasks.append(asyncio.create_task(_watch_worker(child, stop), name="worker process"))
        elif worker:
            from trouw.domain.insight.refresh import ensure_schedule

            temporal_worker = build_worker(
                client, services, strict_sandbox=settings.worker_strict_sandbox
            )
            log.info(
                "worker %s (pid %d) polling task queue %r in namespace %r at %s; content from %s%s",
                client.identity,
                os.getpid(),
                temporal_worker.task_queue,
                settings.temporal_namespace,
                settings.temporal_target,
                settings.content_source,
                f"; started afresh (recycle {recycles_so_far()})" if recycles_so_far() else "",
            )
            log.info("insight schedule: %s", await ensure_schedule(client, settings))
            tasks.append(asyncio.create_task(temporal_worker.run(), name="worker"))
            tasks.append(
                asyncio.create_task(
                    relay_forever(
                        engine,
                        client,
                        task_queue=settings.task_queue,
                        max_attempts=settings.relay_max_attempts,
                        # The worker's own content: what match_journeys starts runs from.
                        listeners=Listeners(engine, services.content, identity=client.identity),
                    ),
                    name="relay",
                )
            )
            content = (
                watch_published(services.content)
                if isinstance(services.content, PublishedContent)
                else watch_content(settings.journeys_dir, settings.templates_dir)
            )
            tasks.append(asyncio.create_task(content, name="content"))
            # Its digest and heartbeat for `trouw status`; the row goes when the task is cancelled.
            tasks.append(
                asyncio.create_task(
                    report_presence(
                        engine, identity=client.identity, task_queue=temporal_worker.task_queue
                    ),
                    name="presence",
                )
            )
            tasks.append(
                asyncio.create_task(
                    sweep_forever(engine, expiring_days=settings.voucher_expiring_days),
                    name="loyalty",
                )
            )
            if settings.worker_recycle_rss_mib > 0 and server is None:
                tasks.append(
                    asyncio.create_task(
                        watch_memory(
                            settings.worker_recycle_rss_mib,
                            every=settings.worker_recycle_check_seconds,
                            not_before=settings.worker_recycle_min_seconds,
                            recycle=recycle,
                        ),
                        name="recycle",
                    )
                )
            elif settings.worker_recycle_rss_mib > 0:
                # Its own embedded dev server would stop with it: it does not recycle.
                log.info("worker recycling off: this worker runs the embedded Temporal server")
            if settings.worker_malloc_trim_seconds > 0:
                tasks.append(
                    asyncio.create_task(
                        trim_forever(settings.worker_malloc_trim_seconds), name="malloc-trim"
                    )
                )
            tasks.append(
                asyncio.create_task(
                    fold_forever(engine, every=settings.report_fold_seconds), name="report-fold"
                )
            )
            # Run records follow Temporal: cancelled, terminated, failed, timed out.
            tasks.append(
                asyncio.create_task(
                    sync_forever(client, engine, every=settings.run_sync_seconds),
                    name="run-sync",
                )
            )
        if api:
            # Imported here: a worker alone never loads the API (FastAPI, the pages' numpy,
            # scipy and Pillow), about 95 MiB of its memory (docs/performance.md).
            import uvicorn

            from trouw.ways_in.api.app import create_app

            config = uvicorn.Config(
                create_app(settings, engine, client),
                host=settings.api_host,
                port=settings.api_port,
                log_level="warning",
                lifespan="on",
            )
            # uvicorn takes SIGINT/SIGTERM while it serves and raises them again when it has
            # stopped, so our handlers still stop the rest of the stack.
            uvicorn_server = uvicorn.Server(config)
            tasks.append(asyncio.create_task(uvicorn_server.serve(), name="api"))
            while not uvicorn_server.started:
                if tasks[-1].done():
                    tasks[-1].result()
                await asyncio.sleep(0.05)
        if on_ready is not None:
            ready: asyncio.Task[None] = asyncio.ensure_future(on_ready(stack))
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait({ready, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if ready.done():
                ready.result()
            else:
                ready.cancel()
        await _wait_or_crash(stop, tasks)
    finally:
        if uvicorn_server is not None:
            uvicorn_server.should_exit = True
        for task in tasks:
            # The loops beside the worker (relay, content, presence, ...) never end by
            # themselves; the worker, its process and the API are stopped below and above.
            if task.get_name() not in ("worker", "worker process", "api"):
                task.cancel()
        if child is not None:
            await _stop_worker(child.process)
        elif worker and tasks:
            # The worker task finishes in-flight activities (graceful timeout) when cancelled.
            tasks[0].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await asyncio.to_thread(server.stop)
    return recycled and not signalled


async def _wait_or_crash(stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    waiter = asyncio.create_task(stop.wait())
    done, _pending = await asyncio.wait({waiter, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        for task in done:
            task.result()  # re-raise what stopped a component
