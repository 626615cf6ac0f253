"""The workflow modules compiled once per worker process, for the sandbox's fresh imports of them."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from types import CodeType, ModuleType
from typing import ClassVar

PACKAGE = "workflows"


class _CompiledOnceLoader(importlib.machinery.SourceFileLoader):
    """A source loader that compiles each file once per process (per modification time)."""

    _codes: ClassVar[dict[tuple[str, int], CodeType]] = {}

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        key = (path, os.stat(path).st_mtime_ns)
        code = self._codes.get(key)
        if code is None:
            code = super().get_code(fullname)
            if code is None:  # pragma: no cover - a source file always has code
                raise ImportError(f"no code for {fullname}", name=fullname)
            self._codes[key] = code
        return code


class WorkflowCodeCache(importlib.abc.MetaPathFinder):
    """Finds the workflow modules and gives them a loader that compiles them once.

    The sandbox imports the workflow modules anew for every workflow it creates (that isolation
    is the point of it). Without bytecode files (PYTHONDONTWRITEBYTECODE, a read-only install)
    each of those imports compiled workflows/journey.py from source again: 22 % of the worker's
    Python CPU in the engine bench's drain. The modules are still executed fresh per workflow.
    """

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".", 1)[0] != PACKAGE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and type(spec.loader) is importlib.machinery.SourceFileLoader:
            spec.loader = _CompiledOnceLoader(spec.loader.name, spec.loader.path)
        return spec


def install_workflow_code_cache() -> None:
    if not any(isinstance(finder, WorkflowCodeCache) for finder in sys.meta_path):
        sys.meta_path.insert(0, WorkflowCodeCache())
