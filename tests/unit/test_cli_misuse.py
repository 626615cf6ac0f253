"""Every misuse of every `trouw` command is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.main import get_command

from tests.conftest import ROOT
from trouw.commands.cli import app, run_command


def _commands() -> list[tuple[list[str], object]]:
    """(path, click command) for every command and group, e.g. (['import', 'orders'], ...)."""
    found: list[tuple[list[str], object]] = []

    def walk(path: list[str], command: object) -> None:
        found.append((path, command))
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk([*path, name], sub)

    walk([], get_command(app))
    return found


COMMANDS = _commands()
LEAVES = [(path, cmd) for path, cmd in COMMANDS if not hasattr(cmd, "commands")]
GROUPS = [path for path, cmd in COMMANDS if hasattr(cmd, "commands")]
WITH_ARGUMENTS = [
    (path, cmd)
    for path, cmd in LEAVES
    if any(
        getattr(p, "param_type_name", "") == "argument" and getattr(p, "required", False)
        for p in getattr(cmd, "params", [])
    )
]


def misuse(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str]:
    code = run_command(args)
    captured = capsys.readouterr()
    return code, captured.err


def test_every_command_is_covered() -> None:
    names = {" ".join(path) for path, _cmd in LEAVES}
    # A new command is picked up by these tests without editing them; this guards the walk.
    assert {"validate", "simulate", "status", "import orders", "templates check"} <= names
    assert len(WITH_ARGUMENTS) >= 5


@pytest.mark.parametrize("path", [p for p, _c in LEAVES], ids=lambda p: " ".join(p))
def test_unknown_option_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], path: list[str]
) -> None:
    code, err = misuse(capsys, [*path, "--no-such-option"])
    assert code == 2
    assert err == (
        f"error: No such option: --no-such-option (see 'trouw {' '.join(path)} --help')\n"
    )


@pytest.mark.parametrize("path", [p for p, _c in WITH_ARGUMENTS], ids=lambda p: " ".join(p))
def test_missing_argument_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], path: list[str]
) -> None:
    command = {tuple(p): c for p, c in WITH_ARGUMENTS}[tuple(path)]
    first = next(
        p
        for p in command.params  # type: ignore[attr-defined]
        if p.param_type_name == "argument" and p.required
    )
    code, err = misuse(capsys, path)
    assert code == 2
    assert err == (
        f"error: Missing argument '{first.name}'. (see 'trouw {' '.join(path)} --help')\n"
    )


@pytest.mark.parametrize("path", GROUPS, ids=lambda p: " ".join(p) or "trouw")
def test_unknown_command_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], path: list[str]
) -> None:
    code, err = misuse(capsys, [*path, "frobnicate"])
    assert code == 2
    prefix = " ".join(["trouw", *path])
    assert err == f"error: No such command 'frobnicate'. (see '{prefix} --help')\n"


def test_bad_option_value_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = misuse(capsys, ["simulate", "--processes", "0", "scenario.yaml"])
    assert code == 2
    assert err == (
        "error: Invalid value for '--processes': Input should be greater than or equal to 1 "
        "(see 'trouw simulate --help')\n"
    )


def test_a_command_that_runs_keeps_its_own_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_command(["--help"]) == 0
    assert "Usage" in capsys.readouterr().out
    assert run_command(["validate", "no/such/journeys"]) == 1
    assert "no/such/journeys:1:1: no such file or folder" in capsys.readouterr().err


def test_typo_in_a_command_from_the_shell() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trouw.commands.cli", "improt", "x"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "error: No such command 'improt'. Did you mean 'import'? (see 'trouw --help')\n"
    )
