"""The shape of the library's code (issue 12): no module over 500 lines, and no
placeholder methods.

A class built from parts in several modules (a segment, a partition log, the consumer)
is a chain in which each part uses only the parts below it, so no part declares a method
``raise NotImplementedError`` for a part above it to fill in. Protocols (interfaces
other code implements) may use ``...`` bodies, and are not affected.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import logstore

PACKAGE = Path(logstore.__file__).parent
MAX_MODULE_LINES = 500

MODULES = sorted(PACKAGE.rglob("*.py"))


def placeholders(source: str) -> list[str]:
    """``Class.method`` for every method whose body (after a docstring) is only
    ``raise NotImplementedError``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if not isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            body = item.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]  # the docstring
            if len(body) == 1 and isinstance(body[0], ast.Raise):
                exc = body[0].exc
                name = exc.func if isinstance(exc, ast.Call) else exc
                if isinstance(name, ast.Name) and name.id == "NotImplementedError":
                    found.append(f"{node.name}.{item.name}")
    return found


def test_the_check_sees_every_module() -> None:
    names = {m.relative_to(PACKAGE).as_posix() for m in MODULES}
    assert {"storage/segment.py", "client/consumer.py", "groups/coordinator.py"} <= names


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.relative_to(PACKAGE).as_posix())
def test_module_is_at_most_500_lines(module: Path) -> None:
    lines = len(module.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, (
        f"{module.relative_to(PACKAGE)} has {lines} lines (at most {MAX_MODULE_LINES}): split it"
    )


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.relative_to(PACKAGE).as_posix())
def test_module_has_no_placeholder_methods(module: Path) -> None:
    assert placeholders(module.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "source",
    [
        "class A:\n    def f(self) -> int:\n        raise NotImplementedError\n",
        "class A:\n    @property\n    def f(self) -> int:\n        '''doc'''\n"
        "        raise NotImplementedError('later')\n",
        "class Outer:\n    class A:\n        async def f(self) -> None:\n"
        "            raise NotImplementedError\n",
    ],
)
def test_placeholder_check_flags_a_stub(source: str) -> None:
    assert len(placeholders(source)) == 1


@pytest.mark.parametrize(
    "source",
    [
        "class P(Protocol):\n    def f(self) -> int: ...\n",
        "class A:\n    def f(self, x: int) -> int:\n        if x:\n"
        "            raise NotImplementedError\n        return x\n",
        "class A:\n    def f(self) -> None:\n        raise ValueError('no')\n",
    ],
)
def test_placeholder_check_allows_real_code_and_protocols(source: str) -> None:
    assert placeholders(source) == []
