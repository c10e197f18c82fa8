"""Sane limits (logstore.store): a partition count above the store's maximum is refused
before anything is made, and an interrupted create leaves nothing behind, quietly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import logstore
from logstore.config import DEFAULT_MAX_PARTITIONS
from logstore.errors import InvalidConfigError
from logstore.storage.files import FileSystem

COUNT = 2_000
PARTITION = re.compile(r"t-\d+")


class _NoCreatingFS(FileSystem):
    """Fails the test at the first directory or file made: proves "before anything is
    created" even on a build that would go on to make 10,001 directories."""

    armed = False

    def _mkdir(self, path: str) -> None:
        if self.armed:
            raise AssertionError(f"created directory {path}")
        super()._mkdir(path)

    def _open(self, path: str, flags: int) -> int:
        if self.armed and flags & os.O_CREAT and not os.path.exists(path):
            raise AssertionError(f"created file {path}")
        return super()._open(path, flags)


def _partition_dirs(root: Path) -> list[str]:
    return sorted(n for n in os.listdir(root) if PARTITION.fullmatch(n))


def _cli(root: Path, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logstore_cli.main", "--data-dir", str(root), *args],
        capture_output=True, text=True, timeout=300, check=False, **kwargs,  # type: ignore[call-overload]
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


# ---------------------------------------------------------------------------- the maximum


def test_create_topic_refuses_more_than_max_partitions_before_creating_anything(
    tmp_path: Path,
) -> None:
    fs = _NoCreatingFS()
    with logstore.open(tmp_path / "store", fs=fs) as store:
        fs.armed = True
        for count in (DEFAULT_MAX_PARTITIONS + 1, 100_000, 10**9):
            with pytest.raises(InvalidConfigError) as info:
                store.create_topic("t", count)
            assert str(count) in str(info.value)
            assert "max_partitions" in str(info.value) or "100000" in str(info.value)
        with pytest.raises(InvalidConfigError):
            store.create_topic("t", **{"partitions": 10_001, "flush": "never"})
        assert store.list_topics() == []
    assert _partition_dirs(tmp_path / "store") == []


def test_add_partitions_refuses_more_than_max_partitions_before_creating_anything(
    tmp_path: Path,
) -> None:
    fs = _NoCreatingFS()
    with logstore.open(tmp_path / "store", fs=fs) as store:
        store.create_topic("t", 2)
        fs.armed = True
        with pytest.raises(InvalidConfigError, match=r"10001 partitions.*at most 10000"):
            store.add_partitions("t", DEFAULT_MAX_PARTITIONS + 1)
        assert store.topic("t").num_partitions == 2
    assert _partition_dirs(tmp_path / "store") == ["t-0", "t-1"]


def test_max_partitions_is_configurable_and_checked(tmp_path: Path) -> None:
    with logstore.open(tmp_path / "store", max_partitions=3) as store:
        store.create_topic("t", 3)
        with pytest.raises(InvalidConfigError, match="at most 3"):
            store.add_partitions("t", 4)
        with pytest.raises(InvalidConfigError, match="max_partitions=4"):
            store.create_topic("u", 4)
    for bad in (0, -1, 100_001, True, "10"):
        with pytest.raises(InvalidConfigError, match="max_partitions"):
            logstore.open(tmp_path / "store", max_partitions=bad)  # type: ignore[arg-type]


def test_cli_refuses_too_many_partitions_in_one_line_and_takes_a_higher_maximum(
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    line = _one_error_line(_cli(root, "topics", "create", "t", "-p", "10001"))
    assert "10001" in line and "--max-partitions 10001" in line
    assert "max_partitions=" not in line  # the command line's words, not the API's
    assert not root.exists() or _partition_dirs(root) == []

    env = {**os.environ, "LOGSTORE_MAX_PARTITIONS": "3"}
    _one_error_line(_cli(root, "topics", "create", "t", "-p", "4", env=env))
    assert _cli(root, "--max-partitions", "4", "topics", "create", "t", "-p", "4").returncode == 0
    _one_error_line(_cli(root, "topics", "add-partitions", "t", "--total", "5", env=env))
    assert _partition_dirs(root) == ["t-0", "t-1", "t-2", "t-3"]


# ---------------------------------------------------------------------------- interrupted


class _InterruptingFS(FileSystem):
    """Raises KeyboardInterrupt (Ctrl-C) when the ``at``-th partition directory is made."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.made = 0

    def _mkdir(self, path: str) -> None:
        if PARTITION.fullmatch(os.path.basename(path)):
            self.made += 1
            if self.made == self.at:
                raise KeyboardInterrupt
        super()._mkdir(path)


def _assert_next_list_is_quiet_and_clean(root: Path, topics: str = "") -> None:
    result = _cli(root, "topics", "list")
    assert result.returncode == 0, result.stderr
    assert len(result.stderr.strip().splitlines()) <= 1, result.stderr
    assert result.stdout.split()[2:] == topics.split()
    assert _partition_dirs(root) == []
    assert [n for n in os.listdir(root / "__topics") if n.startswith("~")] == []


def test_create_interrupted_halfway_by_keyboard_interrupt_leaves_nothing(
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    fs = _InterruptingFS(at=COUNT // 2)
    with logstore.open(root, fs=fs) as store:
        with pytest.raises(KeyboardInterrupt):
            store.create_topic("t", COUNT)
        assert fs.made == COUNT // 2
        assert store.list_topics() == []
        assert _partition_dirs(root) == []  # removed before the interrupt propagated

    _assert_next_list_is_quiet_and_clean(root)


def test_add_partitions_interrupted_halfway_leaves_only_the_old_partitions(
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    fs = _InterruptingFS(at=6)
    with logstore.open(root, fs=fs) as store:
        store.create_topic("t", 2)
        store.append("t", b"kept", partition=1)
        with pytest.raises(KeyboardInterrupt):
            store.add_partitions("t", 10)
        assert store.topic("t").num_partitions == 2
        assert _partition_dirs(root) == ["t-0", "t-1"]
    with logstore.open(root) as store:
        assert [r.value for r in store.read("t", 1, 0)] == [b"kept"]


CRASHING_CREATE = textwrap.dedent(
    """
    import os, re, sys
    import logstore
    from logstore.storage.files import FileSystem

    class CrashingFS(FileSystem):
        made = 0
        def _mkdir(self, path):
            if re.fullmatch(r"t-\\d+", os.path.basename(path)):
                self.made += 1
                if self.made > int(sys.argv[3]):
                    os._exit(9)  # the process dies: no cleanup, no close, no flush
            super()._mkdir(path)

    store = logstore.open(sys.argv[1], fs=CrashingFS())
    if sys.argv[2] == "add":
        store.add_partitions("t", 2 * int(sys.argv[3]))
    else:
        store.create_topic("t", 2 * int(sys.argv[3]))
    """
)


def test_create_killed_halfway_leaves_next_open_one_quiet_cleanup(tmp_path: Path) -> None:
    """The process dies after making half of 2,000 partition directories (as kill -9
    would leave it): the next ``topics list`` removes them all and prints at most one
    line on stderr, not one warning per directory."""
    root = tmp_path / "store"
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_CREATE, str(root), "create", str(COUNT // 2)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert crashed.returncode == 9, crashed.stderr
    assert len(_partition_dirs(root)) == COUNT // 2
    report = logstore.verify_store(root)  # changes nothing: says what the open will do
    assert [f.message for f in report.findings if "t-" in f.message] == [
        f"an interrupted create of topic 't' may have left partition directories t-0 to "
        f"t-{COUNT - 1}: those the registry does not count are removed on open"
    ]
    assert len(_partition_dirs(root)) == COUNT // 2

    _assert_next_list_is_quiet_and_clean(root)


def test_add_partitions_killed_halfway_leaves_next_open_one_quiet_cleanup(
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    with logstore.open(root) as store:
        store.create_topic("t", 1)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_CREATE, str(root), "add", "50"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert crashed.returncode == 9, crashed.stderr
    assert len(_partition_dirs(root)) == 1 + 50

    result = _cli(root, "topics", "list")
    assert result.returncode == 0 and len(result.stderr.strip().splitlines()) <= 1
    assert _partition_dirs(root) == ["t-0"]


_WITH_SIGINT = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv = sys.argv[1:]; runpy.run_module('logstore_cli.main', run_name='__main__')"
)


def test_cli_create_stopped_by_ctrl_c_removes_what_it_made(tmp_path: Path) -> None:
    root = tmp_path / "store"
    proc = subprocess.Popen(
        # a shell's background job ignores SIGINT, and a Python started so installs no
        # KeyboardInterrupt handler: the child installs it itself, as an interactive
        # shell's child would have it
        [sys.executable, "-c", _WITH_SIGINT, "logstore", "--data-dir", str(root), "topics",
         "create", "t", "-p", str(COUNT)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if root.is_dir() and len(_partition_dirs(root)) >= 100:
            break
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.skip("the create finished before it could be interrupted")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)

    assert proc.returncode != 0
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err
    assert _partition_dirs(root) == []
    _assert_next_list_is_quiet_and_clean(root)
