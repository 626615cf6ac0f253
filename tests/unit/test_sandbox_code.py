"""The sandbox's fresh imports of workflow modules reuse one compiled code object per file."""

from __future__ import annotations

import importlib.util
import sys

import workflows
from trouw.stack.sandbox_code import WorkflowCodeCache, install_workflow_code_cache


def test_workflow_modules_compile_once_and_still_run_fresh() -> None:
    finder = WorkflowCodeCache()
    first = finder.find_spec("workflows.options", list(workflows.__path__))
    second = finder.find_spec("workflows.options", list(workflows.__path__))
    assert first is not None and second is not None
    assert first.loader is not None and second.loader is not None
    code = first.loader.get_code("workflows.options")  # type: ignore[attr-defined]
    assert code is second.loader.get_code("workflows.options")  # type: ignore[attr-defined]
    one, two = importlib.util.module_from_spec(first), importlib.util.module_from_spec(second)
    first.loader.exec_module(one)
    second.loader.exec_module(two)
    assert one is not two and one.__dict__ is not two.__dict__


def test_other_modules_are_left_to_the_usual_finders() -> None:
    assert WorkflowCodeCache().find_spec("trouw.settings", None) is None


def test_installed_once() -> None:
    install_workflow_code_cache()
    install_workflow_code_cache()
    assert sum(isinstance(f, WorkflowCodeCache) for f in sys.meta_path) == 1
