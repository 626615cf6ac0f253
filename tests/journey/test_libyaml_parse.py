"""read_document's libyaml parser gives the same nodes (tag, value, line:col) and data as
PyYAML's Python parser on every YAML file of the repository (trouw/language/journey/loader.py `_parse`)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

FAST = getattr(yaml, "CSafeLoader", None)
FILES = subprocess.run(
    ["git", "ls-files", "*.yaml", "*.yml"], cwd=ROOT, capture_output=True, text=True, check=True
).stdout.split()


def shape(node: yaml.Node | None) -> Any:
    """A node tree as plain data: what the problems' file:line:col are read from."""
    if node is None:
        return None
    marks = (node.start_mark.line, node.start_mark.column, node.end_mark.line, node.end_mark.column)
    if isinstance(node, yaml.MappingNode):
        return (node.tag, marks, [(shape(k), shape(v)) for k, v in node.value])
    if isinstance(node, yaml.SequenceNode):
        return (node.tag, marks, [shape(item) for item in node.value])
    return (node.tag, marks, node.value)


@pytest.mark.skipif(FAST is None, reason="PyYAML built without libyaml")
@pytest.mark.parametrize("name", FILES)
def test_libyaml_reads_a_repository_file_as_python_does(name: str) -> None:
    text = (ROOT / name).read_text(encoding="utf-8")
    try:
        expected = (shape(yaml.compose(text, Loader=yaml.SafeLoader)), yaml.safe_load(text))
    except yaml.YAMLError:
        pytest.skip("not YAML PyYAML reads (read_document reports it in Python's words)")
    assert FAST is not None
    assert (shape(yaml.compose(text, Loader=FAST)), yaml.load(text, Loader=FAST)) == expected


def test_the_repository_has_yaml_files_to_compare() -> None:
    assert any(Path(name).parts[0] == "journeys" for name in FILES)
