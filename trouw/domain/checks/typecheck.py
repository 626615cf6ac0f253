"""Checks every name and attribute of an expression or template against the typed context."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError
from jinja2.parser import Parser

from trouw.domain.checks.scope import (
    ANY,
    BOOL,
    DATE,
    DURATION,
    NUMBER,
    TEXT,
    Shape,
    list_of,
)

# Functions the expression language offers (trouw/language/journey/expressions.py) and what they give.
FUNCTIONS: dict[str, Shape] = {
    "days": DURATION,
    "hours": DURATION,
    "weeks": DURATION,
    "duration": DURATION,
    "date": DATE,
    "next_anniversary": DATE,
}
# Filters by what they give back: the same list, an item, a number, text or a bool.
_SAME = {"list", "selectattr", "rejectattr", "select", "reject", "unique", "sort", "reverse"}
_ITEM = {"first", "last", "random", "max", "min"}
_NUMBER = {"length", "count", "sum", "int", "float", "round", "abs"}
_TEXT = {"join", "lower", "upper", "title", "capitalize", "trim", "string", "replace", "e"}
# Filters whose argument (or `attribute=`) names an attribute of the list's items.
_ATTRIBUTE_ARG = {"selectattr", "rejectattr"}
_ATTRIBUTE_KW = {"map", "sort", "sum", "unique", "groupby", "max", "min", "join"}
# Tests that ask whether something exists: their subject may be unknown on purpose.
_EXISTENCE_TESTS = {"defined", "undefined", "none"}


@dataclass(frozen=True)
class NameProblem:
    """An unknown name or attribute, at a line of the checked source (1 for an expression)."""

    line: int
    message: str


def _suggest(wrong: str, known: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(wrong, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{prefix}{close[0]}'?)"
    if not known:
        return f" (nothing is declared under {prefix.rstrip('.')})" if prefix else ""
    listed = ", ".join(sorted(known))
    return f" ({prefix.rstrip('.')} has: {listed})" if prefix else f" (known: {listed})"


class _Checker:
    def __init__(self, scope: Mapping[str, Shape]) -> None:
        self.scopes: list[dict[str, Shape]] = [dict(scope)]
        self.problems: list[NameProblem] = []

    # -- names ---------------------------------------------------------------------------------
    def lookup(self, name: str) -> Shape | None:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    def bind(self, target: nodes.Node, shape: Shape) -> None:
        if isinstance(target, nodes.Name):
            self.scopes[-1][target.name] = shape
        elif isinstance(target, nodes.Tuple):
            for item in target.items:
                self.bind(item, ANY)

    def report(self, node: nodes.Node, message: str) -> Shape:
        self.problems.append(NameProblem(node.lineno or 1, message))
        return ANY

    # -- expressions ---------------------------------------------------------------------------
    def shape(self, node: nodes.Node) -> tuple[Shape, str]:
        """The shape of an expression and a readable path for messages ('' when none)."""
        if isinstance(node, nodes.Name):
            found = self.lookup(node.name)
            if found is None:
                known = sorted({n for s in self.scopes for n in s} | set(FUNCTIONS))
                return self.report(
                    node, f"unknown name '{node.name}'{_suggest(node.name, known, '')}"
                ), node.name
            return found, node.name
        if isinstance(node, nodes.Getattr):
            return self.attribute(node, node.node, node.attr)
        if isinstance(node, nodes.Getitem):
            self.visit(node.arg)
            if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                return self.attribute(node, node.node, node.arg.value)
            base, path = self.shape(node.node)
            if base.kind == "list" and base.item is not None:
                return base.item, f"{path}[]"
            return ANY, ""
        if isinstance(node, nodes.Filter):
            return self.filter(node)
        if isinstance(node, nodes.Test):
            if node.name in _EXISTENCE_TESTS and node.node is not None:
                self.visit_args(node)
                return BOOL, ""
            self.visit_children(node)
            return BOOL, ""
        if isinstance(node, nodes.Call):
            for arg in [*node.args, *(kw.value for kw in node.kwargs)]:
                self.visit(arg)
            if isinstance(node.node, nodes.Name) and node.node.name in FUNCTIONS:
                return FUNCTIONS[node.node.name], ""
            self.visit(node.node)
            return ANY, ""
        if isinstance(node, nodes.Compare | nodes.Not | nodes.And | nodes.Or):
            self.visit_children(node)
            return BOOL, ""
        if isinstance(node, nodes.Const):
            value = node.value
            if isinstance(value, bool):
                return BOOL, ""
            if isinstance(value, int | float):
                return NUMBER, ""
            return (TEXT, "") if isinstance(value, str) else (ANY, "")
        if isinstance(node, nodes.List):
            shapes = [self.shape(item)[0] for item in node.items]
            return list_of(shapes[0] if shapes else ANY), ""
        if isinstance(node, nodes.CondExpr):
            self.visit_children(node)
            return ANY, ""
        self.visit_children(node)
        return ANY, ""

    def attribute(self, node: nodes.Node, owner: nodes.Node, attr: str) -> tuple[Shape, str]:
        base, path = self.shape(owner)
        where = f"{path}.{attr}" if path else attr
        if base.kind in ("number", "bool") and path:
            # A named number used as something else: points.startswith(...). Only named values:
            # the shape of `a or b` is an approximation.
            return self.report(node, f"'{path}' is a {base.kind}: it has no '{attr}'"), where
        if base.kind != "record":
            return ANY, where  # text and dates have methods; any is not described
        if attr in base.fields:
            return base.fields[attr], where
        known = list(base.fields)
        prefix = f"{path}." if path else ""
        return self.report(node, f"unknown name '{where}'{_suggest(attr, known, prefix)}"), where

    def filter(self, node: nodes.Filter) -> tuple[Shape, str]:
        base, path = self.shape(node.node) if node.node is not None else (ANY, "")
        for arg in node.args:
            self.visit(arg)
        for kw in node.kwargs:
            self.visit(kw.value)
        item = base.item if base.kind == "list" and base.item is not None else ANY
        attribute = None
        if node.name in _ATTRIBUTE_ARG and node.args and isinstance(node.args[0], nodes.Const):
            attribute = node.args[0].value
        for kw in node.kwargs:
            if kw.key == "attribute" and node.name in _ATTRIBUTE_KW:
                attribute = kw.value.value if isinstance(kw.value, nodes.Const) else None
        picked = ANY
        if isinstance(attribute, str):
            picked = self.item_path(node, item, f"{path}[]", attribute)
        name = node.name
        if name in _SAME:
            return base, path
        if name in _ITEM:
            return item, f"{path}[]"
        if name == "map":
            return list_of(picked), ""
        if name in _NUMBER:
            return NUMBER, ""
        if name in _TEXT:
            return TEXT, ""
        if name == "default":
            return base, path
        if name == "date":
            return DATE, ""
        return ANY, ""

    def item_path(self, node: nodes.Node, shape: Shape, path: str, dotted: str) -> Shape:
        """An attribute path written as text (selectattr('product.care')) over a list's items."""
        for part in dotted.split("."):
            if shape.kind != "record":
                return ANY
            if part not in shape.fields:
                where = f"{path}.{part}"
                hint = _suggest(part, list(shape.fields), f"{path}.")
                return self.report(node, f"unknown name '{where}'{hint}")
            shape, path = shape.fields[part], f"{path}.{part}"
        return shape

    def visit_args(self, node: nodes.Test) -> None:
        for arg in [*node.args, *(kw.value for kw in node.kwargs)]:
            self.visit(arg)

    def visit(self, node: nodes.Node | None) -> None:
        if node is None:
            return
        if isinstance(node, nodes.Expr):
            self.shape(node)
        else:
            self.statement(node)

    def visit_children(self, node: nodes.Node) -> None:
        for child in node.iter_child_nodes():
            self.visit(child)

    # -- template statements -------------------------------------------------------------------
    def statement(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.For):
            shape, _path = self.shape(node.iter)
            item = shape.item if shape.kind == "list" and shape.item is not None else ANY
            self.scopes.append({"loop": ANY})
            self.bind(node.target, item)
            if node.test is not None:
                self.visit(node.test)
            for child in node.body:
                self.visit(child)
            self.scopes.pop()
            for child in node.else_:
                self.visit(child)
        elif isinstance(node, nodes.Assign):
            shape, _path = self.shape(node.node)
            self.bind(node.target, shape)
        elif isinstance(node, nodes.AssignBlock):
            for child in node.body:
                self.visit(child)
            self.bind(node.target, TEXT)
        elif isinstance(node, nodes.Macro | nodes.CallBlock):
            self.scopes.append({"caller": ANY, "varargs": ANY, "kwargs": ANY})
            for arg in getattr(node, "args", []):
                self.bind(arg, ANY)
            for child in node.body:
                self.visit(child)
            self.scopes.pop()
            if isinstance(node, nodes.Macro):
                self.scopes[-1][node.name] = ANY
        elif isinstance(node, nodes.With):
            self.scopes.append({})
            for target, value in zip(node.targets, node.values, strict=False):
                self.bind(target, self.shape(value)[0])
            for child in node.body:
                self.visit(child)
            self.scopes.pop()
        else:
            self.visit_children(node)


def parse_expression(source: str) -> nodes.Expr:
    from trouw.language.journey.expressions import environment

    parser = Parser(environment(), source, state="variable")
    expression = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError("unexpected text after the expression", 1)
    return expression


def check_names(source: str, scope: Mapping[str, Shape]) -> list[str]:
    """Unknown names and attributes in an expression; [] when it is sound (or does not parse:
    the parser's own message covers that)."""
    try:
        expression = parse_expression(source)
    except TemplateSyntaxError:
        return []
    checker = _Checker(scope)
    checker.visit(expression)
    return list(dict.fromkeys(problem.message for problem in checker.problems))


def expression_shape(source: str, scope: Mapping[str, Shape]) -> Shape:
    """What an expression gives (a list of lines, a date...), for names it binds (`as:`)."""
    try:
        return _Checker(scope).shape(parse_expression(source))[0]
    except TemplateSyntaxError:
        return ANY


def check_template(template: nodes.Template, scope: Mapping[str, Shape]) -> Iterator[NameProblem]:
    """Unknown names and attributes in a parsed template, each with its line."""
    checker = _Checker(scope)
    checker.visit_children(template)
    seen: set[tuple[int, str]] = set()
    for problem in checker.problems:
        if (problem.line, problem.message) not in seen:
            seen.add((problem.line, problem.message))
            yield problem


def unknown_template_names(
    templates: Any,
    channel: str,
    name: str,
    locale: str,
    scope: Mapping[str, Shape],
    *,
    seen: set[str] | None = None,
) -> list[str]:
    """`file:line: unknown name ...` for every name a template uses that the context lacks;
    with `seen`, a name already reported (in another locale, say) is not reported again."""
    found = []
    for ast, where in templates.jinja_sources(channel, name, locale):
        for problem in check_template(ast, scope):
            if seen is not None:
                if problem.message in seen:
                    continue
                seen.add(problem.message)
            found.append(f"{where(problem.line)}: {problem.message}")
    return found
