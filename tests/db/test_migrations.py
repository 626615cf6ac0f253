"""The schema check that spares a worker Alembic's import agrees with Alembic."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from trouw.domain.db.engine import MIGRATIONS_DIR, head_revision, migrate


def test_the_head_read_from_the_files_is_alembics() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert head_revision() == ScriptDirectory.from_config(config).get_current_head()


def _revision(folder: Path, name: str, revision: str, down: str) -> None:
    (folder / f"{name}.py").write_text(f'revision: str = "{revision}"\ndown_revision = {down}\n')


def test_a_branch_or_an_unread_file_leaves_the_choice_to_alembic(tmp_path: Path) -> None:
    _revision(tmp_path, "a", "a", "None")
    _revision(tmp_path, "b", "b", '"a"')
    assert head_revision(tmp_path) == "b"
    _revision(tmp_path, "c", "c", '"a"')  # two heads
    assert head_revision(tmp_path) is None
    (tmp_path / "c.py").write_text("revision = make_id()\n")  # not a literal
    assert head_revision(tmp_path) is None


def test_a_schema_behind_is_still_migrated(engine: Engine) -> None:
    # SQLite and PostgreSQL: the check reads alembic_version where Alembic would (the search
    # path's schema on PostgreSQL), before the advisory lock only PostgreSQL takes.
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "-1")

    def version() -> object:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    assert version() != head_revision()
    migrate(engine)
    assert version() == head_revision()
