"""ChangeWatcher: writes to a watched file, by any process, are reported by key; a file
deleted and made again can be watched again; the portable fallback polls."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Hashable, Iterator
from pathlib import Path

import pytest

from logstore.storage import watch as watch_module
from logstore.storage.files import DEFAULT_FS
from logstore.storage.watch import ChangeWatcher


class _Heard:
    def __init__(self) -> None:
        self.keys: list[Hashable] = []
        self.event = threading.Event()

    def __call__(self, key: Hashable) -> None:
        self.keys.append(key)
        self.event.set()

    def wait(self, key: Hashable, seconds: float = 5.0) -> bool:
        while self.event.wait(seconds):
            self.event.clear()
            if key in self.keys:
                return True
        return key in self.keys


@pytest.fixture(params=["inotify", "polling"])
def watcher(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[
    tuple[ChangeWatcher, _Heard]
]:
    if request.param == "polling":
        monkeypatch.setattr(watch_module, "_inotify", lambda: None)
    heard = _Heard()
    w = ChangeWatcher(DEFAULT_FS, heard)
    assert w.uses_inotify == (request.param == "inotify" and sys.platform == "linux")
    yield w, heard
    w.close()


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_a_write_is_reported_with_its_key(
    tmp_path: Path, watcher: tuple[ChangeWatcher, _Heard]
) -> None:
    w, heard = watcher
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"")
    b.write_bytes(b"")
    w.watch(str(a), "A")
    w.watch(str(b), "B")
    w.watch(str(a), "A")  # watched already: the same
    _append(b, b"x")
    assert heard.wait("B")
    if w.uses_inotify:  # (polling may report a file written in the ms of a look again)
        assert "A" not in heard.keys


def test_a_write_by_another_process_is_reported(
    tmp_path: Path, watcher: tuple[ChangeWatcher, _Heard]
) -> None:
    w, heard = watcher
    path = tmp_path / "head"
    path.write_bytes(b"")
    w.watch(str(path), ("t", 0))
    code = f"import os; fd = os.open({str(path)!r}, os.O_WRONLY); os.pwrite(fd, b'x' * 100, 0)"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert heard.wait(("t", 0))


def test_a_file_made_again_under_the_same_name_is_watched_again(
    tmp_path: Path, watcher: tuple[ChangeWatcher, _Heard]
) -> None:
    w, heard = watcher
    path = tmp_path / "head"
    path.write_bytes(b"")
    w.watch(str(path), "old")
    os.unlink(path)  # the topic deleted ...
    path.write_bytes(b"")  # ... and created again
    heard.wait("old", 0.5)  # (the deletion itself may be reported)
    w.watch(str(path), "new")
    _append(path, b"x")
    assert heard.wait("new"), heard.keys


def test_close_stops_the_thread(tmp_path: Path) -> None:
    heard = _Heard()
    w = ChangeWatcher(DEFAULT_FS, heard)
    path = tmp_path / "f"
    path.write_bytes(b"")
    w.watch(str(path), "k")
    w.close()
    w.close()  # idempotent
    assert not any(t.name == "logstore-watch" and t.is_alive() for t in threading.enumerate())
