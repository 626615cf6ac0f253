"""The layering rules of docs/architecture.md, read from the import statements (no code runs)."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Modules whose import, anywhere below them, means I/O or a framework: never in the pure layer.
IMPURE = (
    "sqlmodel",
    "sqlalchemy",
    "fastapi",
    "trouw.domain.db",
    "trouw.ways_in.api",
    "trouw.settings",
)
PURE = (
    "trouw.language.vocabulary",
    "trouw.language.contracts",
    "trouw.language.policy",
    "trouw.language.holidays",
    "trouw.language.attributes",
    "trouw.language.journey.triggers",
    "trouw.language.journey.interest",
    "trouw.language.journey.plain",
    "trouw.domain.insight.scoring",
)
# The assembly and the commands, the only parts of trouw/ that know workflows/ or activities/.
# Grow this list only with a reason in docs/architecture.md.
ASSEMBLY = {
    "trouw.commands.cli",
    "trouw.stack.health",
    "trouw.domain.insight.cli",
    "trouw.domain.publish",
    "trouw.stack.runtime",
    "trouw.commands.simulate",
    "trouw.stack.temporal",
    "trouw.stack.worker",
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    _module(path): path
    for folder in ("trouw", "workflows", "activities")
    for path in (ROOT / folder).rglob("*.py")
    if "migrations" not in path.parts
}


@cache
def _imports(module: str) -> frozenset[str]:
    """What the module imports when it runs (not what `if TYPE_CHECKING:` names for mypy)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        for inner in ast.walk(node)
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(names)


def _reached(module: str) -> set[str]:
    """Every name imported by the module and, through Trouw's own modules, below it."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for name in _imports(todo.pop()):
            if name not in seen:
                seen.add(name)
                if name in MODULES:
                    todo.append(name)
    return seen


def _impure(names: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == i or n.startswith(i + ".") for i in IMPURE))


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("workflows")))
def test_workflows_reach_only_the_pure_language(module: str) -> None:
    assert _impure(_reached(module)) == []
    assert not any(name.startswith("activities") for name in _reached(module))


@pytest.mark.parametrize("module", PURE)
def test_the_pure_core_reaches_no_io(module: str) -> None:
    assert _impure(_reached(module)) == []


def test_only_the_assembly_imports_workflows_or_activities() -> None:
    upward = {
        module
        for module in MODULES
        if module.startswith("trouw")
        and any(name.split(".")[0] in ("workflows", "activities") for name in _imports(module))
    }
    assert upward <= ASSEMBLY, sorted(upward - ASSEMBLY)


def test_nothing_below_the_api_imports_it() -> None:
    commands = {"trouw.commands.cli", "trouw.commands.demo", "trouw.stack.runtime"}
    upward = {
        module
        for module in MODULES
        if module.startswith("trouw")
        and not module.startswith("trouw.ways_in.api")
        and module not in commands
        and any(name.startswith("trouw.ways_in.api") for name in _imports(module))
    }
    assert upward == set()


# --- the tree on disk: trouw/ grouped by layer (docs/architecture.md) -------------------------

LAYERS = ("language", "domain", "providers", "ways_in", "stack", "commands")
# At the top of trouw/ besides the layers: the package itself and the one settings model.
TOP = {"trouw", "trouw.settings"}


def test_every_module_of_trouw_sits_in_a_layer() -> None:
    loose = sorted(
        module
        for module in MODULES
        if module.startswith("trouw.") and module not in TOP and module.split(".")[1] not in LAYERS
    )
    assert loose == []


def _trouw_modules(names: set[str]) -> set[str]:
    return {name for name in names if name in MODULES and name.startswith("trouw.")}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("trouw.language")))
def test_the_language_is_pure_and_self_contained(module: str) -> None:
    assert _impure(_reached(module)) == []
    outside = _trouw_modules(_reached(module)) - {"trouw.language"}
    assert sorted(m for m in outside if not m.startswith("trouw.language.")) == []


def test_workflows_reach_only_the_language_of_trouw() -> None:
    reached = set().union(*(_reached(m) for m in MODULES if m.startswith("workflows")))
    outside = {m for m in _trouw_modules(reached) if not m.startswith("trouw.language")}
    assert sorted(outside) == []


def test_the_sandbox_passes_through_only_the_language() -> None:
    tree = ast.parse(MODULES["trouw.stack.worker"].read_text(encoding="utf-8"))
    passthrough = next(
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "PASSTHROUGH" for t in node.targets)
    )
    assert [name for name in passthrough if name.split(".")[0] == "trouw"] == ["trouw.language"]
    assert not {"sqlmodel", "sqlalchemy", "fastapi"} & set(passthrough)
