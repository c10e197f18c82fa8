"""Read-only access for real: the command line on a read-only bind mount (``unshare -m``
plus ``mount --bind -o ro``) and, as the unprivileged user 65534 (``setpriv``), on a copy
with mode 0555/0444. Root ignores permission bits, so both run the CLI in a subprocess.
Each test skips, with the reason, only where its mechanism is unavailable here; the
seam-based tests in tests/unit/test_store_read_only.py always run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import logstore
from tests.unit.test_store_dir import snapshot

RO_MOUNT = (
    'mount --bind -o ro "$1" "$1" || exit 98; touch "$1/probe" 2>/dev/null && exit 99; '
    'shift; exec "$@"'
)
"""Run the rest of the arguments with directory $1 bind-mounted read-only over itself
(exit 98: no mount; 99: the mount took writes after all)."""
READS: list[tuple[list[str], str | None, str]] = [
    (["topics", "list"], None, "t "),
    (["topics", "describe", "t"], None, "PARTITION"),
    (["consume", "t", "--from-beginning"], None, "v0\n"),
    (["consume", "t", "--partition", "1", "--offset", "0", "--max-messages", "1"], None, ""),
    (["inspect", "t", "--records"], None, "payload: v0"),
    (["verify"], None, "no problems"),
]
WRITES: list[tuple[list[str], str | None]] = [
    (["topics", "create", "u"], None),
    (["produce", "t"], "x\n"),
    (["consume", "t", "--group", "g", "--from-beginning"], None),
    (["topics", "delete", "t"], None),
]


def _make_store(root: Path) -> None:
    with logstore.open(root) as store:
        store.create_topic("t", 2)
        for i in range(6):
            store.append("t", b"v%d" % i, partition=i % 2)
        with store.consumer(["t"], group_id="g", auto_offset_reset="earliest") as consumer:
            consumer.poll(timeout_ms=200)
            consumer.commit()


def _run_all(prefix: list[str], root: Path) -> list[tuple[int, str, str]]:
    """Every command of READS and WRITES as its own process, started by ``prefix``."""
    out = []
    for args, stdin in [(a, s) for a, s, _ in READS] + WRITES:
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "logstore_cli.main", "--data-dir", str(root),
             *args],
            input=stdin, capture_output=True, text=True, timeout=120, check=False, cwd="/",
        )
        assert done.returncode not in (98, 99), done.stderr
        out.append((done.returncode, done.stdout, done.stderr))
    return out


def _check(results: list[tuple[int, str, str]]) -> None:
    reads, writes = results[: len(READS)], results[len(READS) :]
    for (args, _, expected), (code, out, err) in zip(READS, reads, strict=True):
        assert code == 0, (args, err)
        assert expected in out, (args, out)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("note: ") and "read-only" in lines[0], (
            args, err,
        )
    for (args, _), (code, out, err) in zip(WRITES, writes, strict=True):
        assert code != 0, (args, out)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (args, err)
        assert "Traceback" not in out + err


def _works(command: list[str]) -> str | None:
    """None if ``command`` succeeds here, else why not (for the skip reason)."""
    if shutil.which(command[0]) is None:
        return f"{command[0]} is not installed"
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except OSError as err:
        return f"{command[0]}: {err}"
    if done.returncode != 0:
        return f"{' '.join(command[:3])} failed: {done.stderr.strip() or done.returncode}"
    return None


def test_cli_reads_a_store_on_a_read_only_mount_and_refuses_writes(tmp_path: Path) -> None:
    root = tmp_path / "store"
    _make_store(root)
    probe = tmp_path / "probe"
    probe.mkdir()
    why = _works(["unshare", "-m", "sh", "-c", f"mount --bind -o ro {probe} {probe}"])
    if why is not None:
        pytest.skip(f"no read-only bind mount here: {why}")
    before = snapshot(root)

    _check(_run_all(["unshare", "-m", "sh", "-c", RO_MOUNT, "sh", str(root)], root))

    assert snapshot(root) == before


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A directory user 65534 can reach (pytest's tmp_path is under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="logstore-ro-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for directory, _, _ in os.walk(path):
            os.chmod(directory, 0o755)
        shutil.rmtree(path)


def test_cli_reads_a_copy_it_may_not_write_as_an_unprivileged_user(
    world_readable_dir: Path, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("switching to user 65534 needs root")
    why = _works(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                  sys.executable, "-c", "import logstore, logstore_cli.main"])
    if why is not None:
        pytest.skip(f"cannot run logstore as user 65534 here: {why}")
    _make_store(tmp_path / "store")
    root = world_readable_dir / "backup"
    shutil.copytree(tmp_path / "store", root)  # a backup copy, then made read-only
    for directory, _, files in os.walk(root):
        os.chmod(directory, 0o555)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o444)
    before = snapshot(root)

    _check(_run_all(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"], root))

    assert snapshot(root) == before
