"""Engine efficiency: Trouw's purchase-to-confirmation drain next to a bare Temporal reference, one run.

Run: .venv/bin/python bench/engine_bench.py            (about 15-25 minutes)
     .venv/bin/python bench/engine_bench.py --quick    (a few minutes: fewer purchases, one rate)
     .venv/bin/python bench/engine_bench.py --configs memory --sleepers 10000
Prints a report with every Trouw figure as a ratio to the bare reference measured in the same run;
docs/performance.md ("Engine") has the results. Not a test: nothing here asserts.

The two systems, each on a FRESH `temporal server start-dev` per phase with the same flags
(trouw.stack.temporal.start_dev_server: SQLite persistence, or in memory with --configs memory):

- bare: one workflow per purchase running one activity that renders the confirmation with
  Jinja2 and writes it to an outbox file (outbox/index.jsonl, like Trouw's outbox provider). The
  worker is a second process (this script with --bare-worker); this process starts the workflows.
- trouw: `trouw up` as a subprocess (everything it starts: dev server, API, worker, relay), its
  templates and journeys; this process posts purchases of new customers to POST /v1/events.

Temporal work per purchase: history events and billable actions of the bare reference's drain
histories, next to Trouw's from engine-flow's bench/engine_actions.py (a new web customer's
purchase of three lines over its first hour and its whole life).

Phases per system and Temporal database:
- drain: N purchases of new customers (three lines each), C in flight (start_workflow calls or
  HTTP posts); drain rate = N / (last confirmation in the outbox - first purchase sent). CPU per
  process over the drain and the workflows started per purchase (count_workflows).
- steady: purchases at a fixed rate (fractions of the drain rate measured above, e.g. 80 %) for
  --steady seconds; latency = confirmation handed to the provider (`at` in outbox/index.jsonl)
  minus the moment the purchase was accepted (the API's 202, or start_workflow returning).
- sleepers (trouw, memory server): the worker's RSS once --sleepers customers have bought and
  their journeys sleep (waits of days to weeks), next to its RSS before the first purchase.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(SCRIPT.parent))

import httpx  # noqa: E402
import psutil  # noqa: E402
from api_bench import PRODUCTS, OutboxTail, environment, purchase  # noqa: E402
from bench_load import fire_open_loop, free_port, pct  # noqa: E402
from simulate_bench import export  # noqa: E402
from temporalio import activity, workflow  # noqa: E402

TASK_QUEUE = "engine-bench"
BARE_WORKFLOW = "BarePurchase"
CONFIRMATION = """\
<html><body><h1>Bedankt voor je bestelling, {{ name }}!</h1>
<p>Bestelling {{ order }}:</p><table>
{% for line in lines %}<tr><td>{{ line.qty }} x</td><td>{{ line.name }}</td>\
<td>&euro; {{ "%.2f"|format(line.price * line.qty) }}</td></tr>{% endfor %}
</table><p>Totaal: &euro; {{ "%.2f"|format(total) }}</p>
<p><a href="{{ shop }}/orders/{{ order }}">Bekijk je bestelling</a></p></body></html>
"""


# --------------------------------------------------------------------------------------------
# The bare reference: one workflow, one activity (imported by the --bare-worker process)
# --------------------------------------------------------------------------------------------


@dataclass
class BarePurchase:
    customer: str
    order: str
    name: str
    email: str
    lines: list[dict[str, Any]] = field(default_factory=list)


class BareConfirmation:
    """The reference's one activity: render the confirmation with Jinja2, write it to the outbox."""

    def __init__(self, outbox: Path) -> None:
        from jinja2 import Environment

        self.outbox = outbox
        self.template = Environment(autoescape=True).from_string(CONFIRMATION)
        self.prices = {p["sku"]: (p["name"], float(p["price"])) for p in PRODUCTS}

    @activity.defn(name="send_confirmation")
    async def send_confirmation(self, input: BarePurchase) -> None:
        lines = [
            {
                "qty": line["qty"],
                "name": self.prices[line["sku"]][0],
                "price": self.prices[line["sku"]][1],
            }
            for line in input.lines
        ]
        html = self.template.render(
            name=input.name,
            order=input.order,
            lines=lines,
            total=sum(line["price"] * line["qty"] for line in lines),
            shop="https://delinde.example",
        )
        (self.outbox / f"{input.order}.html").write_text(html)
        entry = {
            "channel": "email",
            "journey": "post_purchase",
            "to": input.email,
            "at": datetime.now(UTC).isoformat(),
            "files": [f"{input.order}.html"],
        }
        with (self.outbox / "index.jsonl").open("a") as index:
            index.write(json.dumps(entry) + "\n")


@workflow.defn(name=BARE_WORKFLOW, sandboxed=False)
class BarePurchaseWorkflow:
    @workflow.run
    async def run(self, input: BarePurchase) -> None:
        await workflow.execute_activity(
            "send_confirmation", input, start_to_close_timeout=timedelta(seconds=30)
        )


def bare_worker_main(address: str, outbox: Path) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    send = BareConfirmation(outbox).send_confirmation

    async def run() -> None:
        client = await Client.connect(address)
        worker = Worker(
            client, task_queue=TASK_QUEUE, workflows=[BarePurchaseWorkflow], activities=[send]
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with worker:
            print("ready", flush=True)
            await stop.wait()

    asyncio.run(run())
    sys.stdout.flush()
    os._exit(0)


def bare_input(prefix: str, n: int) -> BarePurchase:
    body = purchase(prefix, n)
    return BarePurchase(
        customer=body["customer"],
        order=body["order"],
        name=body["profile"]["first_name"],
        email=body["profile"]["email"],
        lines=body["lines"],
    )


# --------------------------------------------------------------------------------------------
# Systems under test
# --------------------------------------------------------------------------------------------


class Processes:
    """CPU seconds and RSS per process of one system, named by role."""

    def __init__(self, roots: list[psutil.Process]) -> None:
        self.roots = roots

    def members(self) -> dict[str, psutil.Process]:
        found: dict[str, psutil.Process] = {}
        for root in self.roots:
            with contextlib.suppress(psutil.Error):
                for proc in [root, *root.children(recursive=True)]:
                    found.setdefault(role(proc), proc)
        return found

    def snap(self) -> dict[str, tuple[float, float]]:
        out: dict[str, tuple[float, float]] = {}
        for name, proc in self.members().items():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                out[name] = (t.user + t.system, proc.memory_info().rss / 2**20)
        me = psutil.Process().cpu_times()
        out["load generator (this script)"] = (me.user + me.system, 0.0)
        return out


def role(proc: psutil.Process) -> str:
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return f"pid {proc.pid}"
    if "server start-dev" in cmd:
        return "temporal dev server"
    if "--bare-worker" in cmd:
        return "bare worker"
    if "spawn_main" in cmd:
        return "trouw worker"  # `trouw up` runs its worker in a spawned process
    if "resource_tracker" in cmd:
        return "multiprocessing resource tracker"
    for word in ("worker", "api", "up"):
        if f"trouw {word}" in cmd or cmd.endswith(f" {word}"):
            return f"trouw {word}"
    return proc.name()


class System:
    name = ""
    address = ""

    def __init__(self, home: Path, persist: bool, prefix: str) -> None:
        self.home, self.persist, self.prefix = home, persist, prefix
        self.outbox = home / "outbox"

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def worker_metrics(self) -> str | None:
        return None  # Prometheus text of the worker's Temporal metrics, where it serves them

    async def submit(self, n: int) -> bool: ...  # True when accepted
    def processes(self) -> Processes: ...
    async def workflows_started(self) -> int | None:
        from temporalio.client import Client

        with contextlib.suppress(Exception):
            client = await Client.connect(self.address)
            return (await client.count_workflows()).count
        return None


def dev_server_settings(home: Path, persist: bool) -> Any:
    from trouw.settings import Settings

    return Settings(
        home=home,
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
        temporal_persist=persist,
        task_queue=TASK_QUEUE,
        signing_keys=["bench-key"],
    )


class Bare(System):
    name = "bare"

    async def start(self) -> None:
        from temporalio.client import Client

        from trouw.stack.temporal import start_dev_server, wait_for_port

        self.outbox.mkdir(parents=True, exist_ok=True)
        settings = dev_server_settings(self.home, self.persist)
        self.server = start_dev_server(settings)
        await wait_for_port("127.0.0.1", settings.temporal_port, within=60)
        self.address = f"127.0.0.1:{settings.temporal_port}"
        self.worker = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, str(SCRIPT), "--bare-worker", self.address, str(self.outbox)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.worker.stdout is not None
        ready = await asyncio.to_thread(self.worker.stdout.readline)
        if ready.strip() != "ready":
            raise RuntimeError("the bare worker did not start")
        self.client = await Client.connect(self.address)

    async def work_per_purchase(self, sample: int = 10) -> dict[str, Any]:
        """History events and billable actions of one purchase, from stored histories."""
        from engine_actions import count_actions

        histories = [
            await self.client.get_workflow_handle(f"bare-{self.prefix}-{n}").fetch_history()
            for n in range(sample)
        ]
        work = count_actions(histories, infer_upserts=False)
        return {
            "workflows": work.workflows / sample,
            "history_events": work.events / sample,
            "actions": work.total_actions / sample,
            "actions_by_kind": {k: v / sample for k, v in work.actions.items()},
        }

    async def submit(self, n: int) -> bool:
        await self.client.start_workflow(
            BARE_WORKFLOW,
            bare_input(self.prefix, n),
            id=f"bare-{self.prefix}-{n}",
            task_queue=TASK_QUEUE,
        )
        return True

    def processes(self) -> Processes:
        return Processes([psutil.Process(self.server.process.pid), psutil.Process(self.worker.pid)])

    async def stop(self) -> None:
        self.worker.send_signal(signal.SIGTERM)
        await asyncio.to_thread(self.worker.wait, 20)
        await asyncio.to_thread(self.server.stop)


class Trouw(System):
    name = "trouw"
    checkout = ROOT  # the code `trouw up` runs: this checkout, or --reference's export

    async def start(self) -> None:
        api_port, temporal_port = free_port(), free_port()
        # The worker's metrics: the Temporal core's task figures (slots, polls, latencies).
        self.metrics_port = free_port()
        env = {
            **os.environ,
            "TROUW_HOME": str(self.home),
            "TROUW_API_PORT": str(api_port),
            "TROUW_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
            "TROUW_TEMPORAL_PORT": str(temporal_port),
            "TROUW_TEMPORAL_UI_PORT": str(free_port()),
            "TROUW_WORKER_METRICS_PORT": str(self.metrics_port),
            "TROUW_TEMPORAL_PERSIST": "true" if self.persist else "false",
            "TROUW_TASK_QUEUE": TASK_QUEUE,
            "TROUW_SIGNING_KEYS": '["bench-key"]',
            "TROUW_JOURNEYS_DIR": str(self.checkout / "journeys"),
            "TROUW_TEMPLATES_DIR": str(self.checkout / "templates"),
        }
        env.pop("TEMPORAL_ADDRESS", None)
        if self.checkout != ROOT:
            # Ahead of the virtualenv's editable install: the export's packages are imported.
            env["PYTHONPATH"] = str(self.checkout)
        self.address = f"127.0.0.1:{temporal_port}"
        self.url = f"http://127.0.0.1:{api_port}"
        log = (self.home.parent / f"{self.home.name}-up.log").open("wb")
        self.up = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "trouw.commands.cli", "up"],
            cwd=self.checkout,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as http:
            while True:
                if self.up.poll() is not None:
                    raise RuntimeError(f"trouw up exited with {self.up.returncode}; see {log.name}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/healthz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("trouw up did not answer within 120 s")
                await asyncio.sleep(0.3)
        key = await asyncio.to_thread(self._api_key)
        self.http = httpx.AsyncClient(
            base_url=self.url,
            timeout=60,
            headers={"Authorization": f"Bearer {key}"},
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )
        for product in PRODUCTS:
            (await self.http.post("/v1/products", json=product)).raise_for_status()

    def _api_key(self) -> str:
        from trouw.domain.db.engine import get_engine, session_scope
        from trouw.ways_in.api.auth import ensure_key

        # Trouw's own database: the embedded SQLite file, or TROUW_DATABASE_URL when the run
        # sets one (Trouw on PostgreSQL).
        url = os.environ.get("TROUW_DATABASE_URL") or f"sqlite:///{self.home / 'trouw.db'}"
        engine = get_engine(url)
        try:
            with session_scope(engine) as session:
                return ensure_key(session, "bench", ["ingest", "read"])
        finally:
            engine.dispose()

    async def submit(self, n: int) -> bool:
        response = await self.http.post("/v1/events", json=purchase(self.prefix, n))
        return response.status_code == 202

    async def worker_metrics(self) -> str | None:
        with contextlib.suppress(httpx.HTTPError):
            async with httpx.AsyncClient(timeout=10) as http:
                return (await http.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        return None

    def processes(self) -> Processes:
        return Processes([psutil.Process(self.up.pid)])

    async def stop(self) -> None:
        await self.http.aclose()
        self.up.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.up.wait, 60)
        except subprocess.TimeoutExpired:
            os.killpg(self.up.pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------------------------


def cpu_share(
    a: dict[str, tuple[float, float]], b: dict[str, tuple[float, float]], wall: float
) -> dict[str, dict[str, float]]:
    """Per process: % of one core over the window, and RSS (MiB) at its end."""
    return {
        name: {
            "cpu_pct_of_core": round(100 * (b[name][0] - a.get(name, (0.0, 0.0))[0]) / wall, 1),
            "cpu_s": round(b[name][0] - a.get(name, (0.0, 0.0))[0], 2),
            "rss_mb": round(b[name][1]),
        }
        for name in b
    }


async def wait_confirmations(
    tail: OutboxTail, addresses: set[str], bound: float
) -> tuple[int, float | None]:
    """Poll the outbox until every address has its confirmation (or the bound passes)."""
    deadline = time.monotonic() + bound
    while True:
        tail.poll()
        got = [tail.first[a] for a in addresses if a in tail.first]
        if len(got) >= len(addresses) or time.monotonic() > deadline:
            return len(got), max(got, default=None)
        await asyncio.sleep(0.2)


async def warm_up(system: System, prefix: str) -> tuple[OutboxTail, Processes]:
    """Three purchases first (imports, compiled templates, connections); the outbox tail after them."""
    tail = OutboxTail(system.outbox / "index.jsonl")
    for n in range(3):
        await system.submit(10_000_000 + n)
    await wait_confirmations(
        tail, {f"{prefix}-c{10_000_000 + n}@example.com" for n in range(3)}, 60
    )
    return tail, system.processes()


async def drain(system: System, opts: argparse.Namespace, prefix: str) -> dict[str, Any]:
    tail, procs = await warm_up(system, prefix)
    before_workflows = await system.workflows_started()
    numbers = iter(range(opts.purchases))
    accepted: set[str] = set()

    async def sender() -> None:
        for n in numbers:
            if await system.submit(n):
                accepted.add(f"{prefix}-c{n}@example.com")

    profilers = await start_profilers(system, opts, prefix)
    metrics_a = await system.worker_metrics()
    snap_a, wall_a = procs.snap(), time.time()
    await asyncio.gather(*(sender() for _ in range(opts.inflight)))
    submitted_s = time.time() - wall_a
    confirmed, last = await wait_confirmations(tail, accepted, opts.drain_bound)
    await stop_profilers(profilers)
    wall_b = max(last or time.time(), wall_a + 1e-3)
    snap_b = procs.snap()
    metrics_b = await system.worker_metrics()
    workflows = await system.workflows_started()
    work = None
    if isinstance(system, Bare):
        with contextlib.suppress(Exception):
            work = await system.work_per_purchase()
    return {
        "work_per_purchase": work,
        "purchases": opts.purchases,
        "accepted": len(accepted),
        "confirmed": confirmed,
        "submit_s": round(submitted_s, 2),
        "drain_s": round(wall_b - wall_a, 2),
        "drain_per_s": confirmed / (wall_b - wall_a),
        "cpu": cpu_share(snap_a, snap_b, time.time() - wall_a),
        "worker_tasks": task_figures(metrics_a, metrics_b) if metrics_a and metrics_b else None,
        "workflows_per_purchase": (workflows - before_workflows) / len(accepted)
        if workflows is not None and before_workflows is not None and accepted
        else None,
    }


# The Temporal core's task figures in a worker's Prometheus text: (metric, label) -> name.
TASK_FIGURES = {
    ("temporal_workflow_task_schedule_to_start_latency", None): "workflow task waits",
    ("temporal_workflow_task_execution_latency", None): "workflow task runs",
    ("temporal_request_latency", "RespondWorkflowTaskCompleted"): "its completion",
    ("temporal_local_activity_execution_latency", "match_journeys"): "match_journeys",
    ("temporal_local_activity_execution_latency", "send_message"): "send_message",
    ("temporal_local_activity_execution_latency", "record_run_events"): "record_run_events",
}


def task_figures(before: str, after: str) -> dict[str, dict[str, float]]:
    """Count and mean ms of each TASK_FIGURES histogram over the drain (after minus before):
    where a purchase's workflow task waits (for a slot and a poll) and what holds it."""

    def sums(text: str) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            metric, _, labels = name.partition("{")
            for suffix, index in (("_sum", 0), ("_count", 1)):
                base = metric.removesuffix(suffix)
                if base == metric:
                    continue
                for (wanted, label), figure in TASK_FIGURES.items():
                    if base == wanted and (label is None or f'"{label}"' in labels):
                        out.setdefault(figure, [0.0, 0.0])[index] += float(value)
        return out

    a, b = sums(before), sums(after)
    figures = {}
    for figure in TASK_FIGURES.values():
        total, count = b.get(figure, [0.0, 0.0])
        done = count - a.get(figure, [0.0, 0.0])[1]
        if done > 0:
            spent = total - a.get(figure, [0.0, 0.0])[0]
            figures[figure] = {"count": done, "mean_ms": round(spent / done, 1)}
    return figures


async def start_profilers(
    system: System, opts: argparse.Namespace, prefix: str
) -> list[subprocess.Popen[bytes]]:
    """--profile DIR: py-spy samples each Python process of the system during the drain."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not opts.profile or not await asyncio.to_thread(Path(spy).exists):
        return []
    out = Path(opts.profile)
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    started = []
    for name, proc in system.processes().members().items():
        if "temporal" in name:
            continue
        target = out / f"{system.name}-{prefix}-{name.replace(' ', '_')}.txt"
        started.append(
            await asyncio.to_thread(
                subprocess.Popen,
                # --gil: only the thread holding the GIL, i.e. where Python CPU goes
                [
                    spy,
                    "record",
                    "--gil",
                    "-p",
                    str(proc.pid),
                    "-r",
                    "50",
                    "-f",
                    "raw",
                    "-o",
                    str(target),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return started


async def stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    for spy in profilers:
        spy.send_signal(signal.SIGINT)
    for spy in profilers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(spy.wait, 30)


async def steady(
    system: System, opts: argparse.Namespace, prefix: str, rate: float
) -> dict[str, Any]:
    tail, procs = await warm_up(system, prefix)
    count = max(1, round(rate * opts.steady))
    accepted_at: dict[str, float] = {}

    async def fire(n: int) -> None:
        if await system.submit(n):
            accepted_at[f"{prefix}-c{n}@example.com"] = time.time()

    snap_a, wall_a = procs.snap(), time.time()
    await fire_open_loop(count, rate, fire)
    snap_fired, wall_fired = procs.snap(), time.time()
    confirmed, _ = await wait_confirmations(tail, set(accepted_at), opts.drain_bound)
    latencies = [tail.first[a] - t for a, t in accepted_at.items() if a in tail.first]
    missing = len(accepted_at) - len(latencies)
    censored = latencies + [float("inf")] * missing
    return {
        "rate": rate,
        "fired": count,
        "accepted": len(accepted_at),
        "confirmed": confirmed,
        "p50": pct(censored, 50),
        "p95": pct(censored, 95),
        "p99": pct(censored, 99),
        "max": max(censored, default=None),
        "cpu": cpu_share(snap_a, snap_fired, wall_fired - wall_a),
    }


async def sleepers(system: System, opts: argparse.Namespace, prefix: str) -> dict[str, Any]:
    """Worker RSS before any purchase and once opts.sleepers customers sleep in their journeys."""
    procs = system.processes()

    def worker_rss() -> float | None:
        snap = procs.snap()
        # `trouw up` runs its worker in a child; a single-process stack has only "trouw up".
        found = snap.get("trouw worker") or snap.get("trouw up")
        return found[1] if found else None

    first = worker_rss()
    tail = OutboxTail(system.outbox / "index.jsonl")
    numbers = iter(range(opts.sleepers))
    accepted: set[str] = set()

    async def sender() -> None:
        for n in numbers:
            if await system.submit(n):
                accepted.add(f"{prefix}-c{n}@example.com")

    began = time.monotonic()
    await asyncio.gather(*(sender() for _ in range(opts.inflight)))
    confirmed, _ = await wait_confirmations(tail, accepted, max(opts.drain_bound, 600))
    await asyncio.sleep(5)  # journeys settle into their first long wait
    return {
        "customers": len(accepted),
        "confirmed": confirmed,
        "seconds": round(time.monotonic() - began),
        "worker_rss_mb_before": first,
        "worker_rss_mb_after": worker_rss(),
        "processes": {name: round(rss) for name, (_cpu, rss) in procs.snap().items() if rss},
        "workflows": await system.workflows_started(),
    }


async def trouw_work_per_purchase() -> dict[str, Any]:
    """engine-flow's count (bench/engine_actions.py): one new web customer's purchase of three
    lines, simulated over its whole life on the time-skipping server, counted from histories."""
    from engine_actions import purchase_work

    try:
        hour, life, _timeline = await asyncio.to_thread(purchase_work)
    except Exception as exc:  # noqa: BLE001 - reported, the rest of the report stands
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"first hour": hour.as_dict(), "whole life": life.as_dict()}


async def phase(
    kind: str, config: str, what: str, opts: argparse.Namespace, work: Path, index: int, **kw: Any
) -> dict[str, Any]:
    prefix = f"e{index}"
    home = work / f"{kind}-{config}-{what}-{index}"
    system: System
    if kind == "bare":
        system = Bare(home, config == "sqlite", prefix)
    else:
        system = Trouw(home, config == "sqlite", prefix)
        if kind == "reference":
            system.name, system.checkout = "reference", opts.reference_dir
    began = time.monotonic()
    try:
        await system.start()
        if what == "drain":
            result = await drain(system, opts, prefix)
        elif what == "steady":
            result = await steady(system, opts, prefix, kw["rate"])
        else:
            result = await sleepers(system, opts, prefix)
    except Exception as exc:  # noqa: BLE001 - a failed phase is reported, the others still run
        result = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        with contextlib.suppress(Exception):
            await system.stop()
    result["phase_s"] = round(time.monotonic() - began, 1)
    with contextlib.suppress(OSError):
        shutil.rmtree(home)
    return result


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    if value == float("inf"):
        return "> bound"
    return f"{value:.{digits}f}"


def cpu_line(cpu: dict[str, dict[str, float]], per: int | None = None) -> str:
    parts = []
    for name, v in sorted(cpu.items()):
        part = f"{name} {v['cpu_pct_of_core']:.0f} %"
        if per:
            part += f" ({1000 * v['cpu_s'] / per:.0f} ms/purchase)"
        parts.append(part)
    return "; ".join(parts)


def actions_section(results: dict[str, Any]) -> list[str]:
    """Temporal work per purchase: the bare reference's drain histories next to Trouw's count."""
    bare = next(
        (
            by["bare"]["work_per_purchase"]
            for by in results["drain"].values()
            if by.get("bare", {}).get("work_per_purchase")
        ),
        None,
    )
    trouw = results.get("actions")
    if not bare and not trouw:
        return []
    out = [
        "",
        "## Temporal work per purchase (history events and billable actions, from histories)",
        "",
        "| system | window | workflows | history events | billable actions | actions by kind |",
        "|---|---|---|---|---|---|",
    ]
    if bare:
        kinds = ", ".join(f"{k} {v:g}" for k, v in sorted(bare["actions_by_kind"].items()))
        out.append(
            f"| bare | its whole life | {bare['workflows']:g} | {bare['history_events']:g} "
            f"| {bare['actions']:g} | {kinds} |"
        )
    if trouw and "error" in trouw:
        out.append(f"| trouw | error: {trouw['error']} |||||")
    elif trouw:
        for window, work in trouw.items():
            kinds = ", ".join(f"{k} {v}" for k, v in work["actions_by_kind"].items() if v)
            ratio = f" ({work['actions'] / bare['actions']:.0f}x bare)" if bare else ""
            out.append(
                f"| trouw (new web customer, 3 lines) | {window} | {work['workflows']} "
                f"| {work['history_events']} | {work['actions']}{ratio} | {kinds} |"
            )
    return out


def report(results: dict[str, Any], env: dict[str, Any]) -> str:
    out = ["", "# engine_bench report", ""] + [f"- {k}: {v}" for k, v in env.items()]
    out += [
        "",
        "## Drain: N purchases of new customers, same in-flight count, until the last confirmation",
        "",
        "| Temporal DB | system | purchases | confirmed | drain /s | ratio to bare | workflows / purchase |",
        "|---|---|---|---|---|---|---|",
    ]
    for config, by in results["drain"].items():
        bare = by.get("bare", {}).get("drain_per_s")
        for kind in by:
            r = by.get(kind, {})
            if "error" in r:
                out.append(f"| {config} | {kind} | error: {r['error']} |||||")
                continue
            ratio = r["drain_per_s"] / bare if bare else None
            out.append(
                f"| {config} | {kind} | {r['purchases']} | {r['confirmed']} | {r['drain_per_s']:.1f} "
                f"| {fmt(ratio)} | {fmt(r['workflows_per_purchase'], 1)} |"
            )
    out += ["", "CPU per process during the drain (% of one core; CPU ms per purchase):"]
    for config, by in results["drain"].items():
        for kind, r in by.items():
            if "cpu" in r:
                out.append(f"- {config} {kind}: {cpu_line(r['cpu'], r['confirmed'])}")
    lines = [
        f"- {config} {kind}: "
        + "; ".join(
            f"{name} {v['mean_ms']:.0f} ms ({v['count']:.0f})"
            for name, v in r["worker_tasks"].items()
        )
        for config, by in results["drain"].items()
        for kind, r in by.items()
        if r.get("worker_tasks")
    ]
    if lines:
        out += [
            "",
            "Trouw's worker during the drain (Temporal core metrics: mean ms, count): a workflow "
            "task waits for a free slot and a poll, then runs, holding its slot, with its local "
            "activities:",
            *lines,
        ]
    out += [
        "",
        "## Steady rate: purchase accepted -> confirmation handed to the provider",
        "",
        "| Temporal DB | system | rate /s (share of its drain) | fired | confirmed | p50 s | p95 s | p99 s | max s | p95 ratio to bare at the same share |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for config, by in results["steady"].items():
        for share, pair in sorted(by.items()):
            bare_p95 = pair.get("bare", {}).get("p95")
            for kind in pair:
                r = pair.get(kind)
                if r is None:
                    continue
                if "error" in r:
                    out.append(f"| {config} | {kind} | {share:.0%} | error: {r['error']} |||||||")
                    continue
                ratio = (
                    r["p95"] / bare_p95
                    if bare_p95 and r["p95"] not in (None, float("inf"))
                    else None
                )
                out.append(
                    f"| {config} | {kind} | {r['rate']:.1f} ({share:.0%}) | {r['fired']} | {r['confirmed']} "
                    f"| {fmt(r['p50'])} | {fmt(r['p95'])} | {fmt(r['p99'])} | {fmt(r['max'])} | {fmt(ratio, 1)} |"
                )
    out += ["", "CPU per process while firing at a steady rate (% of one core):"]
    for config, by in results["steady"].items():
        for share, pair in sorted(by.items()):
            for kind, r in pair.items():
                if "cpu" in r:
                    out.append(f"- {config} {kind} {share:.0%}: {cpu_line(r['cpu'])}")
    out += actions_section(results)
    if results.get("sleepers"):
        s = results["sleepers"]
        out += ["", "## Worker memory with sleeping customers (trouw, in-memory dev server)", ""]
        if "error" in s:
            out.append(f"error: {s['error']}")
        else:
            out.append(
                f"{s['customers']} customers ({s['confirmed']} confirmed, {s['workflows']} workflows) "
                f"in {s['seconds']} s: worker RSS {fmt(s['worker_rss_mb_before'], 0)} MiB before the "
                f"first purchase, {fmt(s['worker_rss_mb_after'], 0)} MiB after; RSS per process (MiB): "
                f"{s['processes']}"
            )
    return "\n".join(out)


async def run(opts: argparse.Namespace) -> None:
    env = environment()
    print(json.dumps(env, indent=1), flush=True)
    results: dict[str, Any] = {"drain": {}, "steady": {}, "sleepers": None}
    started = time.monotonic()
    index = 0
    with tempfile.TemporaryDirectory(prefix="trouw-engine-bench-") as tmp:
        work = Path(tmp)
        opts.kinds = ("bare", "trouw")
        if opts.reference:
            opts.reference_dir = export(ROOT, opts.reference, work / "reference")
            opts.kinds = ("bare", "trouw", "reference")
            env["reference"] = f"{opts.reference} ({opts.reference_dir})"

        async def one(kind: str, config: str, what: str, **kw: Any) -> dict[str, Any]:
            nonlocal index
            index += 1
            print(f"[{time.monotonic() - started:6.0f}s] {kind} {config} {what} {kw}", flush=True)
            result = await phase(kind, config, what, opts, work, index, **kw)
            print(json.dumps(result, default=str), flush=True)
            return result

        for config in opts.configs:
            # Side by side: each system's phase right after the other's, so load changes on the
            # shared machine touch both.
            results["drain"][config] = {k: await one(k, config, "drain") for k in opts.kinds}
            results["steady"][config] = {}
            for share in opts.shares:
                pair: dict[str, Any] = {}
                for kind in opts.kinds:
                    rate = results["drain"][config][kind].get("drain_per_s")
                    if rate:
                        pair[kind] = await one(kind, config, "steady", rate=rate * share)
                results["steady"][config][share] = pair
        if opts.sleepers:
            results["sleepers"] = await one("trouw", "memory", "sleepers")
    if opts.actions:
        results["actions"] = await trouw_work_per_purchase()
    env["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    env["total run s"] = round(time.monotonic() - started)
    print(report(results, env), flush=True)
    if opts.json:
        text = json.dumps({"env": env, **results}, indent=1, default=str)
        await asyncio.to_thread(Path(opts.json).write_text, text)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--bare-worker":
        bare_worker_main(sys.argv[2], Path(sys.argv[3]))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default="sqlite,memory", help="Temporal DB: sqlite, memory")
    parser.add_argument("--purchases", type=int, default=200, help="purchases per drain")
    parser.add_argument("--inflight", type=int, default=16, help="purchases in flight (drain)")
    parser.add_argument(
        "--shares", default="0.5,0.8,1.0", help="steady rates as shares of each drain rate"
    )
    parser.add_argument("--steady", type=float, default=30.0, help="seconds of steady firing")
    parser.add_argument("--drain-bound", type=float, default=180.0, help="max wait, s")
    parser.add_argument("--sleepers", type=int, default=10_000, help="0 to skip")
    parser.add_argument("--json", help="write the raw figures here")
    parser.add_argument(
        "--no-actions",
        dest="actions",
        action="store_false",
        help="skip Trouw's simulated whole-life count (bench/engine_actions.py)",
    )
    parser.add_argument("--profile", help="py-spy each Python process during the drains into DIR")
    parser.add_argument("--quick", action="store_true", help="a run of a few minutes")
    parser.add_argument(
        "--reference",
        help="also run Trouw from a clean export of this git revision (e.g. main), each of its "
        "phases right after this checkout's: before/after in one run",
    )
    opts = parser.parse_args()
    if opts.quick:
        opts.purchases, opts.shares, opts.steady, opts.drain_bound = 80, "0.8", 15.0, 90.0
        if "--sleepers" not in sys.argv:
            opts.sleepers = 300
    opts.configs = [c.strip() for c in opts.configs.split(",") if c.strip()]
    opts.shares = [float(s) for s in opts.shares.split(",") if s.strip()]
    from trouw.stack.temporal import quiet_runtime

    quiet_runtime()
    asyncio.run(run(opts))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
