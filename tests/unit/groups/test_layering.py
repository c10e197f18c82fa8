"""logstore.groups sits below the clients and the store (issue 12, points 2 and 3): its
modules import only the standard library, ``logstore.storage``, ``logstore.errors``,
``logstore.types``, ``logstore.config`` and ``logstore.groups`` itself. The check reads
the source (AST), and is shown to fail on a synthetic upward import."""

from __future__ import annotations

import ast
from pathlib import Path

import logstore.groups

PACKAGE = Path(logstore.groups.__file__).parent
ALLOWED = ("logstore.storage", "logstore.errors", "logstore.types", "logstore.config",
           "logstore.groups")


def upward_imports(source: str) -> list[str]:
    """The ``logstore`` modules ``source`` imports that the groups layer may not."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found += [n for n in names if (n == "logstore" or n.startswith("logstore."))
                  and not n.startswith(ALLOWED)]
    return found


def test_groups_imports_nothing_above_it() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        assert upward_imports(path.read_text()) == [], path.name


def test_layering_check_catches_an_upward_import() -> None:
    synthetic = "from logstore.client.consumer import Consumer\nimport logstore.store\n"
    assert upward_imports(synthetic) == ["logstore.client.consumer", "logstore.store"]
    assert upward_imports("from logstore.storage import statefile\n") == []
