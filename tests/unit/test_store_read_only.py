"""Read-only access (logstore.open(path, read_only=True)) through the I/O seam: a file system
that refuses every change with EROFS, as a read-only mount does, and records every call.
These run everywhere; tests/integration/test_read_only_fs.py does the same on a real
read-only mount and as an unprivileged user."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import logstore
from logstore.errors import ReadOnlyStoreError, StorageError
from logstore.storage.files import Buffer, FileHandle, FileSystem
from tests.unit.test_store_dir import snapshot

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class ErofsFS(FileSystem):
    """A read-only file system: every write, create, rename, unlink, mkdir, rmdir, fsync
    and lock-file creation fails with EROFS. Every primitive call is recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def _refuse(self, op: str, path: str) -> OSError:
        self.calls.append((op, path))
        return OSError(errno.EROFS, os.strerror(errno.EROFS), path)

    def _open(self, path: str, flags: int) -> int:
        if flags & WRITE_FLAGS:
            raise self._refuse("open-for-write", path)
        self.calls.append(("open", path))
        return super()._open(path, flags)

    def _pwritev(self, handle: FileHandle, parts: Sequence[Buffer], position: int) -> int:
        raise self._refuse("write", handle.path)

    def _ftruncate(self, handle: FileHandle, size: int) -> None:
        raise self._refuse("truncate", handle.path)

    def _fsync(self, handle: FileHandle) -> None:
        raise self._refuse("fsync", handle.path)

    def _fsync_dir(self, path: str) -> None:
        raise self._refuse("fsync_dir", path)

    def _rename(self, src: str, dst: str) -> None:
        raise self._refuse("rename", dst)

    def _unlink(self, path: str) -> None:
        raise self._refuse("unlink", path)

    def _mkdir(self, path: str) -> None:
        raise self._refuse("mkdir", path)

    def _rmdir(self, path: str) -> None:
        raise self._refuse("rmdir", path)

    def _lock(self, path: str) -> int:
        raise self._refuse("lock", path)

    def _open_lock(self, path: str) -> int:
        raise self._refuse("open_lock", path)

    def _pread(self, handle: FileHandle, size: int, position: int) -> bytes:
        self.calls.append(("read", handle.path))
        return super()._pread(handle, size, position)

    def _flock(self, fd: int, operation: int) -> None:
        self.calls.append(("flock", str(fd)))
        super()._flock(fd, operation)

    @property
    def refused(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] not in ("open", "read", "flock")]


def _build(root: Path, *, close: bool = True) -> logstore.Store:
    store = logstore.open(root)
    store.create_topic("t", 2, segment_bytes=300, flush="never")
    for i in range(12):
        store.append("t", b"value-%d" % i * 4, key=b"k%d" % i, partition=i % 2,
                     timestamp=1_000 + i)
    with store.consumer(["t"], group_id="g", auto_offset_reset="earliest") as consumer:
        consumer.poll(timeout_ms=200)
        consumer.commit()
    if close:
        store.close()
    return store


def _read_everything(store: logstore.Store) -> dict[int, list[bytes | None]]:
    out = {}
    for p in range(store.topic("t").num_partitions):
        log = store.partition("t", p)
        values: list[bytes | None] = []
        offset = log.log_start_offset
        while offset < log.log_end_offset:
            records = store.read("t", p, offset)
            values += [r.value for r in records]
            offset = records[-1].offset + 1
        out[p] = values
    return out


def _consume_without_group(store: logstore.Store) -> list[bytes | None]:
    values: list[bytes | None] = []
    with store.consumer() as consumer:
        consumer.assign([logstore.TopicPartition("t", p) for p in range(2)])
        consumer.seek_to_beginning()
        while records := consumer.poll(timeout_ms=50):
            values += [r.value for r in records]
    return values


EXPECTED = {0: [b"value-%d" % i * 4 for i in range(0, 12, 2)],
            1: [b"value-%d" % i * 4 for i in range(1, 12, 2)]}


def test_writable_open_of_a_read_only_file_system_fails_with_erofs(tmp_path: Path) -> None:
    """What the command line falls back on: the error carries errno EROFS."""
    root = tmp_path / "store"
    _build(root)
    with pytest.raises(StorageError) as info:
        logstore.open(root, fs=ErofsFS())
    assert info.value.errno == errno.EROFS


def test_read_only_open_reads_everything_and_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "store"
    _build(root)
    before = snapshot(root)
    fs = ErofsFS()

    with logstore.open(root, read_only=True, fs=fs) as store:
        assert store.read_only
        assert store.list_topics() == ["t"]
        described = store.describe_topic("t")
        assert [p.log_end_offset for p in described.partitions] == [6, 6]
        assert _read_everything(store) == EXPECTED
        assert sorted(_consume_without_group(store)) == sorted(EXPECTED[0] + EXPECTED[1])
        assert store.partition("t", 1).offset_for_timestamp(1_005) == 2

    assert fs.refused == [], "a read-only open asked for a change"
    assert any(op == "read" for op, _ in fs.calls)
    assert snapshot(root) == before


def test_read_only_open_of_a_live_copy_repairs_in_memory_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A backup copied while a writer ran: no clean shutdown, a torn batch at the end of
    a log, a lost index, leftovers of an atomic write and of a delete. A writable open
    would cut, rebuild and delete; the read-only one serves exactly the whole records
    and changes no byte."""
    live = _build(tmp_path / "live", close=False)
    shutil.copytree(tmp_path / "live", tmp_path / "copy")
    live.close()
    root = tmp_path / "copy"
    partition = root / "t-0"
    logs = sorted(partition.glob("*.log"))
    with open(logs[-1], "ab") as f:
        f.write(b"\x00\x00\x00\x00\x00\x00\x00\x09\x00\x00\x01\x00 torn")  # half a batch
    for index in partition.glob("*.index"):
        index.unlink()
    (partition / "~checkpoint.tmp").write_bytes(b"left over")
    (partition / "00000000000000000099.index").write_bytes(b"orphan index")
    before = snapshot(root)
    fs = ErofsFS()

    caplog.set_level(logging.WARNING, logger="logstore")
    with logstore.open(root, read_only=True, fs=fs) as store:
        assert _read_everything(store) == EXPECTED
        assert store.partition("t", 0).log_end_offset == 6
    assert any(
        m.startswith(f"reading {logs[-1]} only up to position") and "read-only" in m
        for m in caplog.messages
    ), caplog.messages

    assert fs.refused == []
    assert snapshot(root) == before
    with logstore.open(root) as store:  # a writable open then repairs it for real
        assert _read_everything(store) == EXPECTED


def test_read_only_open_needs_no_lock_files(tmp_path: Path) -> None:
    """A copy without the lock files (they are empty, and a backup may skip dot files):
    none can be created on a read-only mount, and none is needed."""
    root = tmp_path / "store"
    _build(root)
    for lock in [*root.rglob(".*lock"), root / "t-0" / "head"]:
        lock.unlink()
    before = snapshot(root)
    fs = ErofsFS()

    with logstore.open(root, read_only=True, fs=fs) as store:
        assert _read_everything(store) == EXPECTED

    assert fs.refused == []
    assert snapshot(root) == before


WRITES: dict[str, Callable[[logstore.Store], Any]] = {
    "create_topic": lambda s: s.create_topic("u", 1),
    "delete_topic": lambda s: s.delete_topic("t"),
    "alter_topic": lambda s: s.alter_topic("t", retention_ms=1),
    "add_partitions": lambda s: s.add_partitions("t", 3),
    "append": lambda s: s.append("t", b"x"),
    "append_many": lambda s: s.append_many("t", [(b"x", None, None, 0, None)]),
    "apply_retention": lambda s: s.apply_retention(),
    "producer": lambda s: s.producer(),
    "group consumer": lambda s: s.consumer(["t"], group_id="g"),
    "offsets": lambda s: s.offsets,
    "reset_offsets": lambda s: s.reset_offsets("g", to_earliest=True, execute=True),
    "log append": lambda s: s.partition("t", 0).append_records([(1, None, b"x", ())]),
    "log roll": lambda s: s.partition("t", 0).roll(),
    "log flush": lambda s: s.partition("t", 0).flush(),
    "log delete_records": lambda s: s.partition("t", 0).delete_records(1),
    "log retention": lambda s: s.partition("t", 0).apply_retention(),
}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_every_write_on_a_read_only_store_raises_read_only_store_error(
    tmp_path: Path, write: Callable[[logstore.Store], Any]
) -> None:
    root = tmp_path / "store"
    _build(root)
    before = snapshot(root)
    fs = ErofsFS()

    with logstore.open(root, read_only=True, fs=fs) as store:
        with pytest.raises(ReadOnlyStoreError) as info:
            write(store)
        message = str(info.value)
        assert "read-only" in message and str(root) in message and "\n" not in message
        assert isinstance(info.value, StorageError)
        assert _read_everything(store) == EXPECTED  # still usable

    assert fs.refused == []
    assert snapshot(root) == before


def test_read_only_store_follows_a_writer_in_another_store(tmp_path: Path) -> None:
    """Opened while a writer has the store open (the reader joins through the partition
    head), and a writer that opens after the reader: the reader sees what both append,
    and holds no lock that would stop the second writer recovering as usual."""
    root = tmp_path / "store"
    _build(root)
    with logstore.open(root) as writer:
        writer.append("t", b"while open", partition=0)
        with logstore.open(root, read_only=True) as reader:
            assert _read_everything(reader)[0][-1] == b"while open"
            writer.append("t", b"after the reader", partition=0)
            assert _read_everything(reader)[0][-1] == b"after the reader"
    with logstore.open(root, read_only=True) as reader:
        with logstore.open(root) as writer:  # the reader opened the partitions first
            writer.append("t", b"later writer", partition=0)
            writer.partition("t", 0).roll()
            writer.append("t", b"next segment", partition=0)
        assert _read_everything(reader)[0][-2:] == [b"later writer", b"next segment"]


def test_read_only_open_refuses_what_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "missing", tmp_path / "empty"):
        with pytest.raises(StorageError, match="no store"):
            logstore.open(path, read_only=True)
    assert not (tmp_path / "missing").exists()
    assert os.listdir(tmp_path / "empty") == []


def test_verify_store_on_a_read_only_file_system_reports_read_only(tmp_path: Path) -> None:
    root = tmp_path / "store"
    _build(root)
    before = snapshot(root)
    fs = ErofsFS()

    report = logstore.verify_store(root, fs=fs)

    assert report.read_only and not report.all_findings
    assert fs.refused == [("open_lock", str(root / ".lock"))]  # the one try, refused
    assert snapshot(root) == before
