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


def test_the_consoles_page_is_package_data() -> None:
    """Every file of logstore/ui/static/ is in a wheel: its directory is listed with a
    pattern that matches it (an installed `logstore ui` would otherwise serve 404s)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    static = ROOT / "logstore" / "ui" / "static"
    files = [p for p in static.rglob("*") if p.is_file()]
    assert static / "index.html" in files
    for path in files:
        package = ".".join(path.parent.relative_to(ROOT).parts)
        assert package in config["packages"], package
        patterns = config["package-data"].get(package, [])
        assert any(path.match(pattern) for pattern in patterns), (path, patterns)
