"""pyproject.toml lists every package of logstore: an installed (not editable) copy
holds all of the code (the wire server's packages were once left out)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import logstore

ROOT = Path(logstore.__file__).parent.parent


def test_every_package_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "logstore").rglob("__init__.py")
    }
    assert found - listed == set(), "add them to [tool.setuptools] packages"
    assert "logstore_cli" in listed
