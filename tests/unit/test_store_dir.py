"""The data directory (logstore.store): what becomes a store, what is refused without a
write, bad paths as typed one-line errors, and cleanup that never touches a user's file."""

from __future__ import annotations

import errno
import os
import shutil
import threading
from pathlib import Path

import pytest

import logstore
from logstore.errors import NotAStoreError, StorageError
from logstore.storage.files import FileSystem
from logstore.store import Store

Snapshot = dict[str, tuple[str, int, int, int, bytes | None]]


def snapshot(root: Path) -> Snapshot:
    """Every entry under ``root`` (and ``root`` itself): kind, size, mtime, inode and,
    for files, the bytes. Equal snapshots mean nothing was created, written, renamed,
    deleted or touched."""
    out: Snapshot = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        kind = "dir" if path.is_dir() and not path.is_symlink() else "file"
        data = path.read_bytes() if kind == "file" and not path.is_symlink() else None
        out[str(path.relative_to(root))] = (kind, st.st_size, st.st_mtime_ns, st.st_ino, data)
    return out


def _user_dir(root: Path) -> Path:
    """A directory of someone's files, the brief's reproduction among them."""
    (root / "work-1").mkdir(parents=True)
    (root / "work-1" / "notes.tmp").write_bytes(b"x\n")
    (root / "report.txt").write_bytes(b"mine")
    return root


# ---------------------------------------------------------------------------- the marker


def test_store_open_refuses_a_non_empty_directory_without_writing_anything(
    tmp_path: Path,
) -> None:
    """The issue's reproduction: ``D/work-1/notes.tmp`` was deleted and ``D`` became a
    store. Now the open fails naming the directory and ``init=True``, and leaves every
    file, mtime and inode as it was (not even ``.opening.lock`` or ``.lock``)."""
    root = _user_dir(tmp_path / "D")
    before = snapshot(root)

    for create in (True, False):
        with pytest.raises(NotAStoreError) as info:
            logstore.open(root, create=create)
        assert str(root) in str(info.value) and "init=True" in str(info.value)
        assert "work-1" in str(info.value)
        assert isinstance(info.value, StorageError) and info.value.path == str(root)

    assert snapshot(root) == before


@pytest.mark.parametrize(
    "content",
    [b'{"name": "my-web-app", "items": []}', b"{not json"],
    ids=["another-programs-store-json", "not-json"],
)
def test_store_open_refuses_another_programs_store_json_without_writing(
    tmp_path: Path, content: bytes
) -> None:
    root = tmp_path / "app"
    root.mkdir()
    (root / "store.json").write_bytes(content)
    (root / "index.html").write_bytes(b"<html>")
    before = snapshot(root)

    with pytest.raises(StorageError, match=r"store.json|not a logstore"):
        logstore.open(root)
    with pytest.raises(StorageError):
        logstore.open(root, init=True)  # init never overwrites a foreign marker

    assert snapshot(root) == before


def test_store_open_refuses_a_directory_shaped_like_the_file_system_root(
    tmp_path: Path,
) -> None:
    """``--data-dir /`` wrote store files into ``/``. The real ``/`` is never opened by a
    test (on a build without the fix that would write there); a copy of its shape is."""
    fake_root = tmp_path / "root"
    for name in ("bin", "etc", "home", "tmp", "usr"):
        (fake_root / name).mkdir(parents=True)
    (fake_root / "etc" / "hostname").write_bytes(b"box\n")
    os.symlink("usr/lib", fake_root / "lib")
    before = snapshot(fake_root)

    with pytest.raises(NotAStoreError):
        logstore.open(fake_root)

    assert snapshot(fake_root) == before


def test_store_open_makes_a_store_in_a_missing_or_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for root in (tmp_path / "missing", tmp_path / "empty"):
        with logstore.open(root) as store:
            store.create_topic("t", 1)
        with logstore.open(root) as store:  # a store now: opens again
            assert store.list_topics() == ["t"]


def test_store_open_makes_a_store_in_a_directory_holding_only_a_gitkeep(
    tmp_path: Path,
) -> None:
    """The repository ships ``data/.gitkeep``: a fresh clone's ``./dev demo`` opens it."""
    data = tmp_path / "data"
    data.mkdir()
    (data / ".gitkeep").write_bytes(b"")
    with logstore.open(data) as store:
        store.create_topic("t", 1)
    assert (data / ".gitkeep").read_bytes() == b""
    assert (data / "store.json").exists()


def test_store_open_with_init_makes_a_store_beside_user_files_and_never_touches_them(
    tmp_path: Path,
) -> None:
    root = _user_dir(tmp_path / "D")
    before = snapshot(root)

    with logstore.open(root, init=True) as store:
        store.create_topic("work", 2)  # work-0, work-1: work-1 is the user's directory
        store.append("work", b"a", partition=0)
    with logstore.open(root) as store:  # now a store: no init needed
        assert store.list_topics() == ["work"]
        store.delete_topic("work")
    with logstore.open(root) as store:
        assert store.list_topics() == []

    after = snapshot(root)
    for name, entry in before.items():
        if name in {".", "work-1"}:
            continue  # the directories themselves: entries were added and removed
        assert after[name] == entry, name


def test_store_open_treats_names_of_an_initialisation_in_progress_as_empty(
    tmp_path: Path,
) -> None:
    """Two processes initialising one new directory: the second sees the first's
    ``.opening.lock``, ``.lock``, ``__topics`` and the marker's temporary file, and must
    wait its turn, not call the directory foreign."""
    root = tmp_path / "new"
    go = threading.Event()
    paused = threading.Event()

    class PausingFS(FileSystem):
        def _rename(self, src: str, dst: str) -> None:
            if dst.endswith("store.json") and not go.is_set():
                paused.set()
                go.wait(10)
            super()._rename(src, dst)

    first: list[Store] = []
    errors: list[BaseException] = []

    def open_first() -> None:
        try:
            first.append(logstore.open(root, fs=PausingFS()))
        except BaseException as err:  # reported below
            errors.append(err)

    thread = threading.Thread(target=open_first)
    thread.start()
    try:
        assert paused.wait(10)
        names = set(os.listdir(root))
        assert {".opening.lock", ".lock", "__topics", "~store.json.tmp"} == names
        threading.Timer(0.3, go.set).start()
        with logstore.open(root) as second:  # waits for the first, then opens
            assert second.list_topics() == []
    finally:
        go.set()
        thread.join(10)
        for store in first:
            store.close()
    assert not errors


def test_store_open_by_many_threads_at_once_on_a_missing_directory_all_succeed(
    tmp_path: Path,
) -> None:
    root = tmp_path / "new"
    barrier = threading.Barrier(8)
    results: list[BaseException | None] = []

    def opener() -> None:
        barrier.wait()
        try:
            logstore.open(root).close()
            results.append(None)
        except BaseException as err:
            results.append(err)

    threads = [threading.Thread(target=opener) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [None] * 8


# ---------------------------------------------------------------------------- bad paths


def _too_long(tmp_path: Path) -> Path:
    return tmp_path / ("n" * 300)


def _too_deep(tmp_path: Path) -> Path:
    return tmp_path.joinpath(*["abcdefgh"] * 600)


def _under_file(tmp_path: Path) -> Path:
    (tmp_path / "f").write_bytes(b"a file")
    return tmp_path / "f" / "store"


def _regular_file(tmp_path: Path) -> Path:
    (tmp_path / "f").write_bytes(b"a file")
    return tmp_path / "f"


def _loop(tmp_path: Path) -> Path:
    os.symlink("loop", tmp_path / "loop")
    return tmp_path / "loop"


def _under_loop(tmp_path: Path) -> Path:
    return _loop(tmp_path) / "store"


def _dangling(tmp_path: Path) -> Path:
    os.symlink("nowhere", tmp_path / "link")
    return tmp_path / "link"


BAD_PATHS = {
    "name-too-long": (_too_long, errno.ENAMETOOLONG, "too long"),
    "path-too-long": (_too_deep, errno.ENAMETOOLONG, "too long"),
    "under-a-regular-file": (_under_file, errno.ENOTDIR, "is a file"),
    "a-regular-file": (_regular_file, errno.ENOTDIR, "is a file"),
    "symlink-loop": (_loop, errno.ELOOP, "symbolic links"),
    "under-a-symlink-loop": (_under_loop, errno.ELOOP, "symbolic links"),
    "dangling-symlink": (_dangling, None, "symlink"),
}


@pytest.mark.parametrize("case", BAD_PATHS.values(), ids=BAD_PATHS.keys())
def test_store_open_raises_one_line_storage_error_for_a_bad_data_directory(
    tmp_path: Path, case: tuple
) -> None:
    make, code, words = case
    path = make(tmp_path)
    before = snapshot(tmp_path)

    with pytest.raises(StorageError) as info:
        logstore.open(path)

    message = str(info.value)
    assert "\n" not in message and words in message, message
    assert "data directory" in message
    assert len(message) < 400, "a long path is shortened, not printed whole"
    if code is not None:
        assert info.value.errno == code
    assert snapshot(tmp_path) == before


def test_store_open_follows_a_symlink_to_a_directory(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink("real", tmp_path / "link")
    with logstore.open(tmp_path / "link") as store:
        store.create_topic("t", 1)
    assert (tmp_path / "real" / "store.json").exists()
    with logstore.open(tmp_path / "real") as store:
        assert store.list_topics() == ["t"]


def test_store_open_names_a_missing_parent(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"parent .* does not exist"):
        logstore.open(tmp_path / "no" / "such" / "store")
    assert not (tmp_path / "no").exists()


# ---------------------------------------------------------------------------- cleanup


SEGMENT = "00000000000000000000"

NEAR_MISSES_AT_ROOT = {
    "notes.tmp": b"user",
    f"{SEGMENT}.log.bak": b"user",
    "~deleted-notes": b"a file with the delete prefix",
    "~deleted-cafe": b"a file named like a deleted directory",
    "x.index": b"user",
    "checkpoint": b"user",
    "__topics.bak/orders": b"a copy of a registry file",
    "__topicsx": b"user",
    "work-1/notes.tmp": b"x",
    "work-1/checkpoint": b"tensorflow writes one of these",
    "run-1/checkpoint": b"a model directory named like a partition",
    "run-1/head": b"user",
    "~deleted-0123abcd/notes.txt": b"a user's file in a delete-named directory",
    "~deleted-0123abcd/checkpoint": b"and one with a partition file's name",
    # named like partitions no registered topic owns, holding real segments: the
    # segments are data, and the user's file beside them must stay
    "orders-9/notes.txt": b"user",
    "gone-0/keep.me": b"user",
}
NEAR_MISSES_IN_PARTITION = {
    "notes.tmp": b"user",
    f"{SEGMENT}.log.bak": b"user",
    f"{SEGMENT}.log.tmp.keep": b"user",
    f"{SEGMENT[:-1]}.log.tmp": b"19 digits: not a segment name",
    "x.index": b"user",
    "1.log": b"user",
    "~deleted-notes": b"user",
    "~notes": b"user",
    "head.tmp": b"user",
    "checkpoint.bak": b"user",
    "sub/notes.tmp": b"a directory in a partition directory",
}


def _plant(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_cleanup_never_touches_a_user_file_of_any_near_miss_name(tmp_path: Path) -> None:
    """User files with names close to logstore's own, at the store's root, inside live
    partition directories, inside a topic that is deleted, and beside real segment files
    in orphan partition directories: open, create, append, retention, roll, delete,
    close and the orphan cleanup of the next open leave every one as it was."""
    root = tmp_path / "store"
    with logstore.open(root) as store:
        store.create_topic("orders", 2, segment_bytes=200, retention_bytes=300, flush="never")
        store.create_topic("doomed", 2)
        for _ in range(5):
            store.append("orders", b"x" * 100, partition=0)
        store.append("doomed", b"bye", partition=0)
    real_segment = (root / "orders-0" / f"{SEGMENT}.log").read_bytes()
    _plant(root, NEAR_MISSES_AT_ROOT)
    for name in ("orders-9", "gone-0"):
        (root / name / f"{SEGMENT}.log").write_bytes(real_segment)
        (root / name / "checkpoint").write_bytes(b"")
    for partition in ("orders-0", "orders-1", "doomed-0"):
        _plant(root / partition, NEAR_MISSES_IN_PARTITION)
    user_paths = (
        list(NEAR_MISSES_AT_ROOT)
        + [f"{d}/{SEGMENT}.log" for d in ("orders-9", "gone-0")]
        + [f"{p}/{n}" for p in ("orders-0", "orders-1", "doomed-0")
           for n in NEAR_MISSES_IN_PARTITION]
    )
    before = snapshot(root)

    with logstore.open(root) as store:  # alone: leftovers and orphans are cleaned here
        store.append("orders", b"y" * 100, partition=0)
        store.partition("orders", 0).roll()
        assert store.apply_retention() > 0
        store.create_topic("fresh", 3)
        store.add_partitions("fresh", 4)
        store.delete_topic("doomed")
        store.delete_topic("fresh")
        assert store.list_topics() == ["orders"]
    with logstore.open(root) as store:  # and once more, after the delete
        assert store.read("orders", 1, 0) == []

    after = snapshot(root)
    changed = [p for p in user_paths if after.get(p) != before[p]]
    assert changed == []
    assert not (root / "doomed-1").exists()  # held only logstore's files: removed
    assert sorted(os.listdir(root / "doomed-0")) == sorted(
        {n.split("/")[0] for n in NEAR_MISSES_IN_PARTITION}
    ), "only the deleted partition's own files went"
    assert not any(n.startswith("fresh-") for n in os.listdir(root))


def test_cleanup_removes_logstores_own_leftovers_in_their_exact_forms(tmp_path: Path) -> None:
    """What is provably logstore's still goes: the new ``~checkpoint.tmp``, the old
    ``checkpoint.tmp``, ``<segment file>.tmp``/``.deleted``/``.swap``/``.cleaned``, the
    offsets snapshot's temporary file, and orphan partition directories holding only
    logstore's files (a crash in a delete)."""
    root = tmp_path / "store"
    with logstore.open(root) as store:
        store.create_topic("t", 1)
        store.append("t", b"keep")
        with store.consumer(["t"], group_id="g") as consumer:
            consumer.poll(timeout_ms=100)
            consumer.commit()
    partition = root / "t-0"
    ours = ["~checkpoint.tmp", "checkpoint.tmp", f"{SEGMENT}.log.tmp", f"{SEGMENT}.index.swap",
            f"{SEGMENT}.timeindex.deleted", f"{SEGMENT}.log.cleaned"]
    for name in ours:
        (partition / name).write_bytes(b"left over")
    offsets = root / "__consumer_offsets-0"
    for name in ("~offsets.snapshot.tmp", "offsets.snapshot.tmp"):
        (offsets / name).write_bytes(b"left over")
    shutil.copytree(partition, root / "t-7")  # a partition no topic owns (t has 1)
    os.rename(root / "t-7", root / "~deleted-00112233aabbccdd")
    shutil.copytree(partition, root / "old-0")

    with logstore.open(root) as store:
        assert [r.value for r in store.read("t", 0, 0)] == [b"keep"]

    assert [n for n in ours if (partition / n).exists()] == []
    assert not (offsets / "~offsets.snapshot.tmp").exists()
    assert not (offsets / "offsets.snapshot.tmp").exists()
    assert not (root / "~deleted-00112233aabbccdd").exists()
    assert not (root / "old-0").exists()


def test_atomic_writes_use_tilde_temporary_names(tmp_path: Path) -> None:
    renamed: list[tuple[str, str]] = []

    class RecordingFS(FileSystem):
        def _rename(self, src: str, dst: str) -> None:
            renamed.append((os.path.basename(src), os.path.basename(dst)))
            super()._rename(src, dst)

    with logstore.open(tmp_path / "store", fs=RecordingFS()) as store:
        store.create_topic("t", 1)
        store.append("t", b"x")

    temps = {src for src, _ in renamed}
    assert "~store.json.tmp" in temps and "~checkpoint.tmp" in temps
    assert all(src.startswith("~") for src in temps), temps
