"""Problems reach the terminal verbatim: Rich markup never eats text in square brackets."""

from __future__ import annotations

from pathlib import Path

import pytest

from trouw.commands.cli import run_command


def test_pattern_in_a_problem_is_printed_as_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("journey: Bad Name\ntrigger: {event: purchase}\nsteps:\n  - {id: x, exit: y}\n")
    assert run_command(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:1:10: journey: String should match pattern '^[a-z][a-z0-9_]*$'\n" in err
