"""Published journeys and templates: the bundle round trip, and two workers over one database
switching together to a new publish while a refused publish changes nothing."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import shutil
import zlib
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.engine import Engine

from activities.services import Services
from tests.conftest import ROOT
from tests.e2e.test_slice import free_port
from trouw.commands.cli import run_command
from trouw.domain.content import content_digest, files_digest, folder_files
from trouw.domain.db.engine import make_engine
from trouw.domain.db.models import ContentBundle, utcnow
from trouw.domain.publish import (
    Bundle,
    BundleError,
    PublishedContent,
    newest_digest,
    pack,
    publish,
    unpack,
    unpack_to,
    watch_published,
)
from trouw.settings import Settings

LOCATED = re.compile(r"^.+\.yaml:\d+:\d+: ")


def _content(tmp_path: Path) -> tuple[Path, Path]:
    """A content repository: the birthday journey and every shipped template."""
    journeys, templates = tmp_path / "repo" / "journeys", tmp_path / "repo" / "templates"
    journeys.mkdir(parents=True)
    shutil.copy(ROOT / "journeys" / "birthday.yaml", journeys / "birthday.yaml")
    shutil.copytree(ROOT / "templates", templates)
    return journeys, templates


def _worker(tmp_path: Path, name: str, engine: Engine) -> Settings:
    """A worker's settings: its own home and its own (stale, empty) folders on disk."""
    own = tmp_path / name
    (own / "journeys").mkdir(parents=True)
    (own / "templates").mkdir()
    return Settings(
        home=own / "home",
        database_url="sqlite:///unused.db",
        journeys_dir=own / "journeys",
        templates_dir=own / "templates",
        signing_keys=["test-key"],
        content_source="database",
    )


def test_bundle_round_trip_keeps_every_file_and_the_folder_digest() -> None:
    files = folder_files(ROOT / "journeys", ROOT / "templates")
    assert unpack(pack(files)) == files
    assert files_digest(files) == content_digest(ROOT / "journeys", ROOT / "templates")


@pytest.mark.parametrize("name", ["journeys/../../etc/x", "other/x.yaml", "journeys", "/abs/x"])
def test_unpack_refuses_names_that_leave_the_bundle(name: str) -> None:
    forged = {name: base64.b64encode(b"x").decode()}
    with pytest.raises(BundleError):
        unpack(zlib.compress(json.dumps(forged).encode()))


def test_unpacked_folder_is_checked_and_an_altered_copy_replaced(tmp_path: Path) -> None:
    journeys, templates = _content(tmp_path)
    files = folder_files(journeys, templates)
    bundle = Bundle(files_digest(files), files, utcnow(), "test")
    folder = unpack_to(bundle, tmp_path / "cache")
    assert content_digest(folder / "journeys", folder / "templates") == bundle.digest
    (folder / "journeys" / "birthday.yaml").write_text("journey: edited on the host\n")
    assert unpack_to(bundle, tmp_path / "cache") == folder
    assert content_digest(folder / "journeys", folder / "templates") == bundle.digest
    wrong = Bundle("0" * 12, files, utcnow(), "test")
    with pytest.raises(BundleError):
        unpack_to(wrong, tmp_path / "cache")


def test_two_workers_switch_to_a_new_publish_and_a_refused_one_changes_nothing(
    tmp_path: Path, engine: Engine
) -> None:
    journeys, templates = _content(tmp_path)
    workers = [
        Services(
            settings=s,
            engine=engine,
            content=PublishedContent(s, engine, poll_seconds=0),
        )
        for s in (_worker(tmp_path, "w1", engine), _worker(tmp_path, "w2", engine))
    ]
    # Nothing published: no journey starts, whatever a worker's own folder holds.
    shutil.copy(journeys / "birthday.yaml", workers[0].settings.journeys_dir / "birthday.yaml")
    assert [w.catalog.journeys() for w in workers] == [{}, {}]

    first = publish(engine, workers[0].settings, journeys, templates, by="ana")
    assert first.problems == [] and first.bundle is not None
    v1 = [w.catalog.journeys()["birthday"].version for w in workers]
    t1 = [w.templates.version("email", "birthday") for w in workers]
    assert v1[0] == v1[1] and t1[0] == t1[1]

    text = (journeys / "birthday.yaml").read_text()
    (journeys / "birthday.yaml").write_text(text.replace("every year.", "every year!"))
    strings = templates / "email" / "birthday" / "strings.en.yaml"
    strings.write_text(strings.read_text().replace("Happy birthday", "Happy birthday to you"))
    second = publish(engine, workers[1].settings, journeys, templates, by="ben")
    assert second.bundle is not None and second.bundle.digest != first.bundle.digest
    for worker in workers:
        assert worker.content.current().digest == second.bundle.digest
        assert worker.catalog.journeys()["birthday"].version not in v1
        assert worker.templates.version("email", "birthday") not in t1
        assert "Happy birthday to you" in worker.templates.strings("birthday", "en")["subject"]
    v2 = {w.catalog.journeys()["birthday"].version for w in workers}
    assert len(v2) == 1

    again = publish(engine, workers[0].settings, journeys, templates, by="ana")
    assert again.unchanged and newest_digest(engine) == second.bundle.digest

    (journeys / "birthday.yaml").write_text(text.replace("template: birthday", "template: nope"))
    refused = publish(engine, workers[0].settings, journeys, templates, by="ana")
    assert refused.bundle is None and refused.problems
    assert all(LOCATED.match(p) for p in refused.problems), refused.problems
    assert newest_digest(engine) == second.bundle.digest
    for worker in workers:
        assert worker.content.current().digest == second.bundle.digest
        assert {worker.catalog.journeys()["birthday"].version} == v2


def test_publish_command_refuses_with_file_line_col_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    journeys, templates = _content(tmp_path)
    monkeypatch.setenv("TROUW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TROUW_DATABASE_URL", f"sqlite:///{tmp_path / 'trouw.db'}")
    monkeypatch.setenv("TROUW_SIGNING_KEYS", '["test-key"]')
    args = ["publish", "--journeys", str(journeys), "--templates", str(templates), "--by", "ci"]
    assert run_command(args) == 0
    digest = content_digest(journeys, templates)
    assert f"published {digest}" in capsys.readouterr().out
    monkeypatch.setenv("TROUW_CONTENT_SOURCE", "database")
    monkeypatch.setenv("TROUW_TEMPORAL_PORT", str(free_port()))  # no Temporal: not this test's
    run_command(["status"])
    assert f"content: published {digest} at " in capsys.readouterr().out
    (journeys / "birthday.yaml").write_text("journey: birthday\nsteps: []\n")
    assert run_command(args) == 1
    captured = capsys.readouterr()
    assert "birthday.yaml:" in captured.err and "nothing published" in captured.err


def test_status_reports_a_corrupt_newest_bundle_as_a_failing_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    journeys, templates = _content(tmp_path)
    url = f"sqlite:///{tmp_path / 'trouw.db'}"
    monkeypatch.setenv("TROUW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TROUW_DATABASE_URL", url)
    monkeypatch.setenv("TROUW_SIGNING_KEYS", '["test-key"]')
    args = ["publish", "--journeys", str(journeys), "--templates", str(templates), "--by", "ci"]
    assert run_command(args) == 0
    engine = make_engine(url)
    table = ContentBundle.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(sa.update(table).values(payload=b"not a bundle"))
    engine.dispose()
    capsys.readouterr()
    monkeypatch.setenv("TROUW_CONTENT_SOURCE", "database")
    monkeypatch.setenv("TROUW_TEMPORAL_PORT", str(free_port()))  # no Temporal: not this test's
    assert run_command(["status"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  content: database: the newest published bundle is unreadable (bundle " in out


def test_a_worker_keeps_its_bundle_while_the_database_is_unreachable(
    tmp_path: Path, engine: Engine
) -> None:
    journeys, templates = _content(tmp_path)
    settings = _worker(tmp_path, "w1", engine)
    content = PublishedContent(settings, engine, poll_seconds=0)
    done = publish(engine, settings, journeys, templates, by="ana")
    assert done.bundle is not None
    running = content.current()
    assert running.digest == done.bundle.digest
    content.engine = make_engine(f"sqlite:///{tmp_path / 'missing' / 'no.db'}")
    assert content.current() is running
    assert "birthday" in running.catalog.journeys()


def test_the_worker_exports_the_published_digest_it_runs(tmp_path: Path, engine: Engine) -> None:
    journeys, templates = _content(tmp_path)
    settings = _worker(tmp_path, "w1", engine)
    content = PublishedContent(settings, engine, poll_seconds=0.01)

    def exported(digest: str) -> bool:
        return REGISTRY.get_sample_value("trouw_content_info", {"digest": digest}) == 1

    async def watch_until(digest: str) -> None:
        # Runs the watcher until it exports `digest` (a generous ceiling only for a hung
        # watcher): a loaded machine makes the round slower, not the test wrong.
        watcher = asyncio.create_task(watch_published(content))
        try:
            for _ in range(3000):
                if exported(digest) or watcher.done():
                    break
                await asyncio.sleep(0.01)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    asyncio.run(watch_until("none"))
    assert exported("none")
    done = publish(engine, settings, journeys, templates, by="ana")
    assert done.bundle is not None
    asyncio.run(watch_until(done.bundle.digest))
    assert exported(done.bundle.digest)
    assert REGISTRY.get_sample_value("trouw_content_info", {"digest": "none"}) is None
