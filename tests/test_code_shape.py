"""The limits the project keeps its code to, measured with ast over every module of lib/:
no module over 500 lines, no function over 80 lines, no signature over 10 parameters.

A function's length runs from its ``def`` to its last line, less the lines of functions and
classes nested in it, which are measured on their own. Parameters are every name a call can bind
(positional-only, ordinary, keyword-only, ``*args`` and ``**kwargs``), ``self``/``cls`` excluded.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

from lib.paths import REPO_ROOT

LIB = REPO_ROOT / "lib"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
MAX_PARAMETERS = 10
SHOWN = 15  # offenders listed in a failure message, worst first

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _modules() -> list[Path]:
    return sorted(p for p in LIB.rglob("*.py") if "__pycache__" not in p.parts)


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _where(path: Path, node: ast.AST | None = None) -> str:
    line = f":{node.lineno}" if node is not None and hasattr(node, "lineno") else ""
    return f"{path.relative_to(REPO_ROOT)}{line}"


def _statements(node: ast.AST) -> Iterator[ast.stmt]:
    """The statements directly inside ``node``'s blocks (functions are only ever defined there)."""
    for field in ("body", "orelse", "finalbody", "handlers", "cases"):
        for child in getattr(node, field, None) or []:
            if isinstance(child, ast.stmt):
                yield child
            else:  # an except handler or a match case: its own block
                yield from _statements(child)


def _functions(tree: ast.AST) -> Iterator[tuple[str, FunctionNode]]:
    """Every function and method with its dotted name inside the module (nested ones included)."""
    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, FunctionNode]]:
        for child in _statements(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{prefix}{child.name}", child
                yield from walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def _own_lines(node: FunctionNode) -> int:
    """Lines of ``node`` without those of the functions and classes defined inside it."""
    total = (node.end_lineno or node.lineno) - node.lineno + 1
    nested = 0
    todo = list(_statements(node))
    while todo:
        child = todo.pop()
        if isinstance(child, _NESTED):
            start = min([child.lineno, *(d.lineno for d in child.decorator_list)])
            nested += (child.end_lineno or child.lineno) - start + 1
        else:
            todo.extend(_statements(child))
    return total - nested


def _parameter_count(node: FunctionNode) -> int:
    args = node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args)]
    count = len(names) + len(args.kwonlyargs) + (args.vararg is not None) + (args.kwarg is not None)
    return count - (1 if names and names[0] in ("self", "cls") else 0)


def _report(what: str, limit: int, offenders: list[tuple[int, str]]) -> str:
    worst = sorted(offenders, reverse=True)[:SHOWN]
    lines = [f"{len(offenders)} {what} over {limit}; worst first:"] + [f"  {n:5d}  {name}" for n, name in worst]
    return "\n".join(lines)


def test_no_module_over_500_lines() -> None:
    offenders = [(n, _where(p)) for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not offenders, _report("modules in lib/ have lines", MAX_MODULE_LINES, offenders)


def test_no_function_over_80_lines() -> None:
    offenders = []
    for path in _modules():
        for name, node in _functions(_tree(path)):
            if (n := _own_lines(node)) > MAX_FUNCTION_LINES:
                offenders.append((n, f"{_where(path, node)} {name}"))
    assert not offenders, _report("functions in lib/ have lines", MAX_FUNCTION_LINES, offenders)


def test_no_signature_over_10_parameters() -> None:
    offenders = []
    for path in _modules():
        for name, node in _functions(_tree(path)):
            if (n := _parameter_count(node)) > MAX_PARAMETERS:
                offenders.append((n, f"{_where(path, node)} {name}"))
    assert not offenders, _report("signatures in lib/ have parameters", MAX_PARAMETERS, offenders)


def test_the_measures_themselves() -> None:
    source = (
        "class A:\n"
        "    def method(self, a, /, b, *args, c, **kw):\n"
        "        def inner(x):\n"
        "            return x\n"
        "\n"
        "        return inner\n"
        "    @classmethod\n"
        "    def make(cls, a):\n"
        "        return cls()\n"
    )
    functions = dict(_functions(ast.parse(source)))
    assert list(functions) == ["A.method", "A.method.inner", "A.make"]
    assert [_parameter_count(f) for f in functions.values()] == [5, 1, 1]
    assert [_own_lines(f) for f in functions.values()] == [3, 2, 2]
