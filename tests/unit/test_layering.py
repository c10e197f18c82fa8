"""The layering: every import in ``logstore/`` and ``cli/`` points down (issue 12, point 3).

The layers, lowest first (:data:`LAYERS`); a module may import from its own layer or any
below it, never from one above:

====  ==========  ====================================================================
rank  layer       packages and modules
====  ==========  ====================================================================
0     base        ``logstore.errors``, ``logstore.types``, ``logstore.config``,
                  ``logstore.partitioner``, ``logstore.headers``,
                  ``logstore.kafka_configs`` (importable by every layer)
1     records     ``logstore.records`` (the RecordBatch v2 codec)
2     storage     ``logstore.storage`` (segments, partition logs, files)
3     topics      ``logstore.topic``, ``logstore.metadata``, ``logstore.groups``
4     store       ``logstore.store``, ``logstore.verify``, ``logstore.registry``,
                  ``logstore.storedir``, ``logstore.topictable``
5     backend     ``logstore.backend`` (what serves the clients' seam)
6     client      ``logstore.client`` (producer, consumer, admin, the Backend Protocol)
7     patterns    ``logstore.patterns`` (retries, request-reply, priorities: clients only)
8     server      ``logstore.server`` (the Kafka wire-protocol server)
9     ui          ``logstore.ui`` (the web console: clients, patterns, and a data
                  directory's storage-level store for its files)
10    facade      ``logstore`` (``logstore/__init__.py``), ``logstore.embedded``,
                  ``logstore.cluster``
11    cli         ``logstore_cli`` (``cli/``)
====  ==========  ====================================================================

A module belongs to the layer of the longest name in the table that is it or a package
holding it; a module under ``logstore/`` that no name covers fails
:func:`test_every_module_has_a_layer` (add it to :data:`LAYERS`: one line).

What counts as an import: every ``import``/``from ... import`` anywhere in the module,
at module level, inside functions (a function-level import is still a dependency, only a
later one), and under ``if TYPE_CHECKING:`` (an annotation that names an upper layer is a
dependency on it: the type checker follows it, and it usually becomes a runtime import
the day someone needs an ``isinstance``). Relative imports are resolved. ``from logstore
import X`` is an import of ``logstore.X`` if that is a module, else of the facade.

Two more pins on the clients (issue 12, point 1): clients reach the records only through
the backend seam, so

* nothing in ``logstore/client/`` imports ``logstore.storage``, ``logstore.topic``,
  ``logstore.metadata`` or ``logstore.groups`` (they are below the store, so layering
  alone would allow it), and ``logstore.store`` only under ``if TYPE_CHECKING:`` (to
  annotate ``store: Store | Backend``), except in ``logstore/client/backend.py``, whose
  ``resolve_backend`` turns a Store into its backend;
* no client module reads an attribute named ``fs``, ``path`` or ``store`` (a store's
  file system, directory, or a LocalBackend's store), other than of an imported module
  (``os.path`` is fine).

The checkers run on source text, so the tests at the end show each one failing on
synthetic modules (an upward import, a TYPE_CHECKING one, a function-level one, ...).
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import logstore

PACKAGE = Path(logstore.__file__).parent
ROOT = PACKAGE.parent
CLI = ROOT / "cli"
CLI_PACKAGE = "logstore_cli"  # cli/ is installed under this name (pyproject.toml)

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", (
        "logstore.errors", "logstore.types", "logstore.config", "logstore.partitioner",
        "logstore.headers", "logstore.kafka_configs",
    )),
    ("records", ("logstore.records",)),
    ("storage", ("logstore.storage",)),
    ("topics", ("logstore.topic", "logstore.metadata", "logstore.groups")),
    ("store", (
        "logstore.store", "logstore.storedir", "logstore.registry", "logstore.topictable",
        "logstore.verify", "logstore.maintenance", "logstore.transactions",
    )),
    ("backend", ("logstore.backend",)),
    ("client", ("logstore.client",)),
    ("patterns", ("logstore.patterns",)),
    ("server", ("logstore.server",)),
    ("ui", ("logstore.ui",)),
    ("facade", ("logstore", "logstore.embedded", "logstore.cluster")),
    ("cli", (CLI_PACKAGE,)),
]
"""Layers lowest first: ``(name, module prefixes)``. To add a store-level module, add its
name to the "store" row."""

EXACT = frozenset({"logstore"})
"""Names that stand for one module, not a package and everything in it (the facade is
``logstore/__init__.py``, not every module of the package)."""

CLIENT_FORBIDDEN = ("logstore.storage", "logstore.topic", "logstore.metadata", "logstore.groups")
CLIENT_STORE_AT_RUNTIME = frozenset({"logstore.client.backend"})
"""The client modules that may import ``logstore.store`` outside TYPE_CHECKING."""
CLIENT_FORBIDDEN_ATTRIBUTES = frozenset({"fs", "path", "store"})


def layer_of(module: str) -> tuple[int, str] | None:
    """``(rank, name)`` of the layer ``module`` belongs to (None: not in the table)."""
    best: tuple[int, int, str] | None = None  # (prefix length, rank, name)
    for rank, (name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            covers = module == prefix or (
                prefix not in EXACT and module.startswith(prefix + ".")
            )
            if covers and (best is None or len(prefix) > best[0]):
                best = (len(prefix), rank, name)
    return None if best is None else (best[1], best[2])


# --------------------------------------------------------------------------- imports


@dataclass(frozen=True)
class Import:
    line: int
    target: str  # the module imported (absolute)
    type_checking: bool  # under ``if TYPE_CHECKING:``


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_module(name: str) -> bool:
    """Whether ``name`` (``logstore.x.y``) is a module or package of the source tree."""
    parts = name.split(".")
    if parts[0] == "logstore":
        base = PACKAGE.joinpath(*parts[1:])
    elif parts[0] == CLI_PACKAGE:
        base = CLI.joinpath(*parts[1:])
    else:
        return False
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(source: str, module: str, *, is_package: bool = False) -> list[Import]:
    """Every import of a first-party module in ``source`` (the text of ``module``)."""
    tree = ast.parse(source)
    guarded: set[int] = set()  # ids of import nodes under ``if TYPE_CHECKING:``
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.body:
                guarded.update(id(n) for n in ast.walk(statement))
    package = module if is_package else module.rpartition(".")[0]
    out: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = []
            for alias in node.names:
                sub = f"{prefix}.{alias.name}"
                targets.append(sub if _is_module(sub) else prefix)
        else:
            continue
        for target in dict.fromkeys(targets):
            if target.split(".")[0] in ("logstore", CLI_PACKAGE):
                out.append(Import(node.lineno, target, id(node) in guarded))
    return out


def upward_imports(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """A message for every import in ``module`` of a layer above its own."""
    own = layer_of(module)
    if own is None:
        return [f"{module} is in no layer: add it to LAYERS in tests/unit/test_layering.py"]
    problems = []
    for found in imports_of(source, module, is_package=is_package):
        theirs = layer_of(found.target)
        if theirs is not None and theirs[0] > own[0]:
            how = " (under TYPE_CHECKING)" if found.type_checking else ""
            problems.append(
                f"{module}:{found.line} imports {found.target}{how}: layer {own[1]!r} "
                f"(rank {own[0]}) may not import from layer {theirs[1]!r} (rank {theirs[0]}), "
                f"which is above it"
            )
    return problems


def client_seam_problems(source: str, module: str) -> list[str]:
    """A message for every way client ``module`` reaches past the backend seam."""
    problems = []
    for found in imports_of(source, module):
        target = found.target
        if any(target == f or target.startswith(f + ".") for f in CLIENT_FORBIDDEN):
            problems.append(
                f"{module}:{found.line} imports {target}: clients reach storage, topics, "
                f"metadata and groups only through the backend seam (logstore.client.backend)"
            )
        elif (
            target == "logstore.store"
            and not found.type_checking
            and module not in CLIENT_STORE_AT_RUNTIME
        ):
            problems.append(
                f"{module}:{found.line} imports logstore.store at run time: a client may "
                f"name Store in annotations (under TYPE_CHECKING) and reach it only "
                f"through resolve_backend"
            )
    tree = ast.parse(source)
    modules = {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    for node in sorted(
        (n for n in ast.walk(tree) if isinstance(n, ast.Attribute)), key=lambda n: n.lineno
    ):
        if (
            node.attr in CLIENT_FORBIDDEN_ATTRIBUTES
            and not (isinstance(node.value, ast.Name) and node.value.id in modules)
        ):
            problems.append(
                f"{module}:{node.lineno} reads .{node.attr} ({ast.unparse(node)}): clients "
                f"do not touch a store's files, directory or a backend's store"
            )
    return problems


# --------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


def modules() -> Iterator[Module]:
    for root, package in ((PACKAGE, "logstore"), (CLI, CLI_PACKAGE)):
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            yield Module(".".join([package, *parts]), path, is_package)


MODULES = list(modules())
CLIENT_MODULES = [
    m for m in MODULES if m.name.startswith(("logstore.client.", "logstore.patterns"))
]
"""The clients and the messaging patterns built on them: both reach records only through
the backend seam."""


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_module_imports_only_its_own_layer_or_below(module: Module) -> None:
    source = module.path.read_text(encoding="utf-8")

    problems = upward_imports(source, module.name, is_package=module.is_package)

    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module", CLIENT_MODULES, ids=lambda m: m.name)
def test_client_module_reaches_records_only_through_the_backend_seam(module: Module) -> None:
    problems = client_seam_problems(module.path.read_text(encoding="utf-8"), module.name)

    assert not problems, "\n".join(problems)


def test_every_module_has_a_layer() -> None:
    unplaced = [m.name for m in MODULES if layer_of(m.name) is None]

    assert not unplaced, f"add these to LAYERS in tests/unit/test_layering.py: {unplaced}"


def test_layering_check_covers_the_whole_tree() -> None:
    names = {m.name for m in MODULES}

    assert {
        "logstore", "logstore.errors", "logstore.records.batch", "logstore.storage.log",
        "logstore.store", "logstore.backend.local", "logstore.client.consumer",
        "logstore_cli.main",
    } <= names
    assert {"logstore.client.producer", "logstore.client.backend"} <= {
        m.name for m in CLIENT_MODULES
    }


def test_layers_are_ordered_as_issue_12_says() -> None:
    ranks = {name: rank for rank, (name, _) in enumerate(LAYERS)}

    order = ["base", "records", "storage", "topics", "store", "backend", "client", "patterns",
             "server", "ui", "facade", "cli"]
    assert sorted(ranks, key=ranks.__getitem__) == order
    assert layer_of("logstore.storage.segment") == (ranks["storage"], "storage")
    assert layer_of("logstore") == (ranks["facade"], "facade")
    assert layer_of("logstore.client.backend") == (ranks["client"], "client")
    assert layer_of("logstore.embedded") == (ranks["facade"], "facade")
    assert layer_of("logstore.ui.app") == (ranks["ui"], "ui")
    assert layer_of("logstore.nothing") is None  # "logstore" is the facade module only
    assert layer_of("elsewhere") is None


# --------------------------------------------------------------------------- the checkers fail


UPWARD = {
    "storage_imports_client": ("logstore.storage.x", "from logstore.client import producer"),
    "storage_imports_client_module": ("logstore.storage.x", "import logstore.client.consumer"),
    "records_imports_storage": ("logstore.records.x", "from logstore.storage.log import X"),
    "topic_imports_store": ("logstore.topic", "from logstore.store import Store"),
    "store_imports_backend": ("logstore.store", "from logstore.backend import backend_for"),
    "backend_imports_client": ("logstore.backend.x", "from logstore.client.backend import B"),
    "client_imports_facade": ("logstore.client.x", "import logstore"),
    "client_imports_facade_name": ("logstore.client.x", "from logstore import open"),
    "base_imports_records": ("logstore.types", "from logstore.records import encode_batch"),
    "library_imports_cli": ("logstore.client.x", "from logstore_cli import main"),
    "function_level": (
        "logstore.store",
        "def producer(self):\n    from logstore.client.producer import Producer\n"
        "    return Producer(self)",
    ),
    "type_checking": (
        "logstore.store",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from logstore.client import admin",
    ),
    "typing_type_checking": (
        "logstore.storage.x",
        "import typing\nif typing.TYPE_CHECKING:\n    from logstore.store import Store",
    ),
    "relative": ("logstore.storage.x", "from ..client import consumer"),
}


@pytest.mark.parametrize(("module", "source"), UPWARD.values(), ids=UPWARD.keys())
def test_layering_check_flags_an_upward_import(module: str, source: str) -> None:
    problems = upward_imports(textwrap.dedent(source), module)

    assert len(problems) == 1, problems
    assert module in problems[0] and "above it" in problems[0]


def test_layering_check_names_the_module_the_import_and_both_layers() -> None:
    source = "import os\n\nfrom logstore.errors import StorageError\nimport logstore.client\n"

    [problem] = upward_imports(source, "logstore.storage.x")

    assert problem == (
        "logstore.storage.x:4 imports logstore.client: layer 'storage' (rank 2) may not "
        "import from layer 'client' (rank 6), which is above it"
    )


DOWNWARD = {
    "client_imports_backend_and_base": (
        "logstore.client.x",
        "from logstore.client.backend import Backend\nfrom logstore.errors import E\n"
        "from logstore.records.inputs import check_bytes\nimport logstore.backend",
    ),
    "same_layer": ("logstore.topic", "from logstore.metadata import OffsetStore"),
    "facade_imports_everything": (
        "logstore",
        "from logstore.storage.log import PartitionLog\nfrom logstore.client import admin",
    ),
    "cli_imports_facade": ("logstore_cli.main", "import logstore\nfrom logstore import open"),
    "relative_sibling": ("logstore.storage.x", "from .files import FileSystem\nfrom . import log"),
    "third_party": ("logstore.records.x", "import crc32c\nfrom typing import TYPE_CHECKING"),
}


@pytest.mark.parametrize(("module", "source"), DOWNWARD.values(), ids=DOWNWARD.keys())
def test_layering_check_allows_imports_downward(module: str, source: str) -> None:
    assert upward_imports(textwrap.dedent(source), module) == []


def test_layering_check_flags_a_module_in_no_layer() -> None:
    [problem] = upward_imports("", "elsewhere.x")

    assert "no layer" in problem


CLIENT_BAD = {
    "storage": "from logstore.storage.log import PartitionLog",
    "storage_module": "import logstore.storage.files",
    "topic": "from logstore.topic import Topic",
    "metadata": "from logstore.metadata import OffsetStore",
    "groups": "from logstore.groups import GroupCoordinator",
    "store_at_runtime": "from logstore.store import Store",
    "store_fs": "def f(store):\n    return store.fs.read_file('x')",
    "store_path": "def f(self):\n    return self._store.path",
    "backend_store": "def f(self):\n    return self._backend.store.partition('t', 0)",
}


@pytest.mark.parametrize("source", CLIENT_BAD.values(), ids=CLIENT_BAD.keys())
def test_client_seam_check_flags_reaching_past_the_backend(source: str) -> None:
    assert client_seam_problems(textwrap.dedent(source), "logstore.client.x")


CLIENT_GOOD = {
    "annotation": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
    "    from logstore.store import Store",
    "os_path": "import os\nos.path.join('a', 'b')",
    "backend": "from logstore.client.backend import Backend, resolve_backend",
    "records": "from logstore.records.consumer_protocol import decode_assignment",
}


@pytest.mark.parametrize("source", CLIENT_GOOD.values(), ids=CLIENT_GOOD.keys())
def test_client_seam_check_allows_the_seam(source: str) -> None:
    assert client_seam_problems(textwrap.dedent(source), "logstore.client.x") == []


def test_client_seam_check_lets_resolve_backend_import_the_store() -> None:
    source = "from logstore.store import Store"

    assert client_seam_problems(source, "logstore.client.backend") == []
