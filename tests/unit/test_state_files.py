"""The store's small state files (registry files, creation markers, ``store.json``, the
offsets snapshot of stores written before the offsets log was compacted, the partition and
cleaner checkpoints): one checksummed format, the previous version's formats still read,
and damage a typed error naming the file (or, for the advisory ones, the documented
recovery).

``tests/data/store_v0_1/`` is a store written by the previous version of logstore
(commit cf8451d: plain JSON registry files and marker, the old snapshot and text
checkpoint): topic ``events`` (2 partitions of 20 records, ``value-0`` .. ``value-39``
alternating, ``segment_bytes=1024`` so each has two segments), topic ``empty``, and group
``billing`` with offsets 7 and 3.
"""

from __future__ import annotations

import ast
import json
import logging
import shutil
from pathlib import Path

import pytest

import logstore
import logstore.embedded
import logstore.registry
import logstore.store
from logstore.errors import CorruptionError, StorageError
from logstore.metadata import OffsetStore
from logstore.storage.files import FileSystem
from logstore.storage.log import PartitionLog
from logstore.storage.readonly import ReadOnlyFileSystem
from logstore.storage.statefile import MAGIC, encode_state, read_state
from logstore.types import SystemClock, TopicPartition
from logstore.verify import verify_store
from tests.legacy_offsets import make_legacy

FS = FileSystem()
OLD_STORE = Path(__file__).parent.parent / "data" / "store_v0_1"
PACKAGE = Path(logstore.__file__).parent
TP = TopicPartition


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    root = tmp_path / "old"
    shutil.copytree(OLD_STORE, root)
    return root


def _values(store: logstore.Store, topic: str, partition: int) -> list[bytes | None]:
    plog = store.partition(topic, partition)
    values: list[bytes | None] = []
    offset = plog.log_start_offset
    while offset < plog.log_end_offset:
        records = store.read(topic, partition, offset)
        values += [r.value for r in records]
        offset = records[-1].offset + 1
    return values


def _flip(path: Path, needle: bytes) -> None:
    """Flip one bit of the first byte of ``needle`` in file ``path``."""
    data = bytearray(path.read_bytes())
    at = data.index(needle)
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _is_state_file(path: Path) -> bool:
    return path.read_bytes().startswith(MAGIC)


# ---------------------------------------------------------------------- the old formats


def test_a_store_written_by_the_previous_version_opens_with_everything_in_it(
    old_store: Path,
) -> None:
    assert not _is_state_file(old_store / "store.json")  # the fixture is the old format
    assert not _is_state_file(old_store / "__topics" / "events")
    old_id = json.loads((old_store / "__topics" / "events").read_text())["id"]
    with logstore.open(old_store) as store:
        assert store.list_topics() == ["empty", "events"]
        assert store.topic("events").topic_id == old_id
        assert store.topic("events").config.segment_bytes == 1024
        assert _values(store, "events", 0) == [b"value-%d" % i for i in range(0, 40, 2)]
        assert _values(store, "events", 1) == [b"value-%d" % i for i in range(1, 40, 2)]
        assert store.partition("events", 0).was_clean  # the old checkpoint was read
        offsets = store.offsets.group_offsets("billing")
        assert {tp: c.offset for tp, c in offsets.items()} == {
            TP("events", 0): 7, TP("events", 1): 3
        }
        assert offsets[TP("events", 0)].metadata == "m"
        assert offsets[TP("events", 0)].topic_id == old_id
    # its offsets snapshot was migrated into the (compacted) offsets log, then deleted
    assert not (old_store / "__consumer_offsets-0" / "offsets.snapshot").exists()
    with logstore.open(old_store) as store:
        assert store.offsets.group_offsets("billing") == offsets
    report = verify_store(old_store)
    assert report.all_findings == [], report.all_findings


def test_an_old_store_is_written_only_in_the_new_format(old_store: Path) -> None:
    with logstore.open(old_store) as store:
        store.alter_topic("events", retention_ms=60_000)
        store.append("events", b"new", partition=0)
        store.offsets.commit("billing", {TP("events", 0): (8, "")})
    assert _is_state_file(old_store / "__topics" / "events")
    assert _is_state_file(old_store / "events-0" / "checkpoint")
    assert not (old_store / "__consumer_offsets-0" / "offsets.snapshot").exists()  # migrated
    assert not _is_state_file(old_store / "store.json")  # an existing marker stays as it is
    assert not _is_state_file(old_store / "__topics" / "empty")  # nothing changed it
    with logstore.open(old_store) as store:
        assert store.topic("events").config.retention_ms == 60_000
        assert _values(store, "events", 0)[-1] == b"new"
        assert store.offsets.committed("billing", TP("events", 0)).offset == 8  # type: ignore[union-attr]
    assert verify_store(old_store).all_findings == []


def test_an_old_store_opens_read_only_without_being_rewritten(old_store: Path) -> None:
    before = {p: p.read_bytes() for p in old_store.rglob("*") if p.is_file()}
    with logstore.open(old_store, read_only=True) as store:
        assert _values(store, "events", 1)[:2] == [b"value-1", b"value-3"]
    # its committed offsets read read-only: the old snapshot, not migrated
    offsets = OffsetStore(str(old_store), fs=ReadOnlyFileSystem(FS, str(old_store)),
                          clock=SystemClock())
    try:
        assert {tp.partition: c.offset for tp, c in offsets.group_offsets("billing").items()
                } == {0: 7, 1: 3}
    finally:
        offsets.close()
    assert {p: p.read_bytes() for p in old_store.rglob("*") if p.is_file()} == before


def test_an_old_creation_marker_still_removes_the_interrupted_partitions(
    old_store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = old_store / "__topics" / "~creating-0123456789abcdef"
    marker.write_text(json.dumps({"topic": "events", "first": 2, "end": 4}))
    for p in (2, 3):  # what an add-partitions killed before its commit point leaves
        config = logstore.TopicConfig(partitions=4)
        PartitionLog(str(old_store / f"events-{p}"), config, fs=FS).close()
    caplog.set_level(logging.INFO, logger="logstore")
    with logstore.open(old_store) as store:
        assert store.topic("events").num_partitions == 2
    assert not marker.exists()
    assert not (old_store / "events-2").exists() and not (old_store / "events-3").exists()
    assert "interrupted create or add-partitions" in caplog.text


# ---------------------------------------------------------------------- the new format


def test_every_state_file_of_a_new_store_is_a_checksummed_state_file(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with logstore.open(root) as store:
        store.create_topic("t", 1)
        store.offsets.commit("g", {TP("t", 0): (0, "")})
    assert json.loads(read_state(FS, str(root / "store.json"), "store")) == {
        "format": "logstore", "version": 1
    }
    assert json.loads(read_state(FS, str(root / "__topics" / "t"), "topic"))["name"] == "t"
    read_state(FS, str(root / "t-0" / "checkpoint"), "checkpoint")
    offsets = root / "__consumer_offsets-0"
    read_state(FS, str(offsets / "checkpoint"), "checkpoint")
    assert not (offsets / "offsets.snapshot").exists()  # the log is compacted instead
    with logstore.open(root) as store:
        store.offsets._log.roll()
        assert store.offsets._log.compact(force=True) is not None
    progress = json.loads(read_state(FS, str(offsets / "cleaner.checkpoint"),
                                     "cleaner-checkpoint"))
    assert progress["first_dirty_offset"] == 1


def test_a_creation_marker_is_a_state_file_while_the_create_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bytes] = []
    real = logstore.registry.write_topic_file

    def spy(fs: FileSystem, root: str, *args: object) -> None:
        seen.extend(p.read_bytes() for p in (Path(root) / "__topics").glob("~creating-*"))
        real(fs, root, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(logstore.registry, "write_topic_file", spy)
    with logstore.open(tmp_path / "s") as store:
        store.create_topic("t", 3)
    assert len(seen) == 1 and seen[0].startswith(b"logstore-state 1 creating\n")
    assert b'"end": 3, "first": 0, "topic": "t"' in seen[0]
    assert list((tmp_path / "s" / "__topics").glob("~creating-*")) == []


# ---------------------------------------------------------------------- damage


def _new_store(root: Path) -> None:
    with logstore.open(root) as store:
        store.create_topic("t", 1)
        store.append("t", b"x")
        store.offsets.commit("g", {TP("t", 0): (1, "")})


def test_a_damaged_registry_file_is_a_corruption_error_naming_it_and_the_topic_stays(
    tmp_path: Path,
) -> None:
    root = tmp_path / "s"
    _new_store(root)
    path = root / "__topics" / "t"
    _flip(path, b'"partitions": 1')
    with pytest.raises(CorruptionError, match="CRC-32C") as err:
        logstore.open(root)
    assert err.value.path == str(path) and "topic registry file" in str(err.value)
    assert (root / "t-0").is_dir() and path.exists()  # nothing of the topic was dropped
    [finding] = verify_store(root).corrupt
    assert finding.path == str(path) and "topic registry file is damaged" in finding.message


@pytest.mark.parametrize("old", [False, True], ids=["state-file", "old-json"])
def test_a_registry_file_naming_another_topic_is_a_corruption_error(
    tmp_path: Path, old: bool
) -> None:
    root = tmp_path / "s"
    _new_store(root)
    payload = json.dumps({"name": "u", "config": {"partitions": 1}}).encode()
    (root / "__topics" / "t").write_bytes(payload if old else encode_state("topic", payload))
    with pytest.raises(CorruptionError, match="it names topic 'u'"):
        logstore.open(root)


def test_a_damaged_store_json_is_a_corruption_error_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "s"
    _new_store(root)
    _flip(root / "store.json", b'"version"')
    with pytest.raises(CorruptionError) as err:
        logstore.open(root)
    assert err.value.path == str(root / "store.json")
    with pytest.raises(CorruptionError):
        logstore.open(root, read_only=True)
    [finding] = verify_store(root).corrupt
    assert "store.json is damaged" in finding.message


@pytest.mark.parametrize(
    ("content", "error", "words"),
    [
        (b'{"format": "something-else"}', StorageError, "is not logstore's"),
        (b"<html>not json</html>", StorageError, "not valid JSON"),
        (encode_state("store", b'{"format": "something-else"}'), StorageError,
         "is not logstore's"),
        (encode_state("topic", b"{}"), CorruptionError, "holds 'topic' state, not 'store'"),
        (encode_state("store", b'{"format": "logstore", "version": 2}'), StorageError,
         "version 2"),
    ],
    ids=["foreign-json", "foreign-bytes", "foreign-format", "other-kind", "newer-version"],
)
def test_a_store_json_that_is_not_ours_is_refused_and_left_alone(
    tmp_path: Path, content: bytes, error: type[Exception], words: str
) -> None:
    root = tmp_path / "s"
    root.mkdir()
    (root / "store.json").write_bytes(content)
    for init in (False, True):
        with pytest.raises(error, match=words):
            logstore.open(root, init=init)
    assert sorted(p.name for p in root.iterdir()) == ["store.json"]  # nothing written
    assert (root / "store.json").read_bytes() == content


def test_a_damaged_offsets_snapshot_is_a_corruption_error_naming_it(tmp_path: Path) -> None:
    """A legacy store's (tests/legacy_offsets.py): stores of today have no snapshot."""
    root = tmp_path / "s"
    _new_store(root)
    make_legacy(root, FS, SystemClock())
    path = root / "__consumer_offsets-0" / "offsets.snapshot"
    assert _is_state_file(path)
    _flip(path, b'"g", "t", 0, 1,')
    with logstore.open(root) as store:
        with pytest.raises(CorruptionError, match="offsets snapshot") as err:
            _ = store.offsets
        assert err.value.path == str(path)
    [finding] = verify_store(root).corrupt
    assert finding.path == str(path)


def test_a_damaged_checkpoint_is_recovered_from_the_segments(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "s"
    _new_store(root)
    path = root / "t-0" / "checkpoint"
    _flip(path, b"recovery_point")
    [finding] = verify_store(root).repairs
    assert finding.path == str(path)
    with logstore.open(root) as store:
        assert not store.partition("t", 0).was_clean
        assert _values(store, "t", 0) == [b"x"]
    assert f"ignoring damaged checkpoint {path}" in caplog.text
    assert _is_state_file(path)  # rewritten
    assert verify_store(root).all_findings == []


def test_a_damaged_creation_marker_is_removed_with_a_warning_and_its_partitions_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "s"
    _new_store(root)
    marker = root / "__topics" / "~creating-00000000000000aa"
    data = bytearray(encode_state("creating", b'{"end": 3, "first": 1, "topic": "t"}'))
    data[-3] ^= 0x01  # the CRC no longer matches
    marker.write_bytes(bytes(data))
    for p in (1, 2):
        PartitionLog(str(root / f"t-{p}"), logstore.TopicConfig(partitions=3), fs=FS).close()
    [finding] = [f for f in verify_store(root).repairs if f.path == str(marker)]
    assert "creation marker" in finding.message
    with logstore.open(root) as store:
        assert store.topic("t").num_partitions == 1
    assert "creation marker" in caplog.text and str(marker) in caplog.text
    assert not marker.exists()
    assert not (root / "t-1").exists() and not (root / "t-2").exists()  # orphans, removed


def _damaged_copies(data: bytes) -> list[tuple[str, bytes]]:
    """Every cut, and every byte with its lowest or highest bit flipped."""
    cases = [(f"cut-{n}", data[:n]) for n in range(len(data))]
    for at in range(len(data)):
        for mask in (0x01, 0x80):
            copy = bytearray(data)
            copy[at] ^= mask
            cases.append((f"flip-{at}-{mask:02x}", bytes(copy)))
    return cases


@pytest.mark.parametrize("name", ["__topics/t", "store.json"])
def test_every_cut_and_bit_flip_of_a_registry_file_or_store_json_is_a_typed_error(
    tmp_path: Path, name: str
) -> None:
    """Never a foreign exception, never a store opened without the topic: a
    CorruptionError naming the file (the one exception: store.json emptied, which reads
    as no marker of ours, a StorageError as before)."""
    root = tmp_path / "s"
    _new_store(root)
    path = root / name
    original = path.read_bytes()
    problems = []
    for ident, data in _damaged_copies(original):
        path.write_bytes(data)
        try:
            logstore.open(root).close()
        except CorruptionError as err:
            if err.path != str(path):
                problems.append(f"{ident}: names {err.path}")
        except StorageError as err:
            if not (name == "store.json" and data == b""):
                problems.append(f"{ident}: {type(err).__name__}: {err}")
        except Exception as err:
            problems.append(f"{ident}: foreign {type(err).__name__}: {err}")
        else:
            problems.append(f"{ident}: opened")
    path.write_bytes(original)
    with logstore.open(root) as store:
        assert store.list_topics() == ["t"]
    assert not problems, "\n".join(problems[:20])


# ---------------------------------------------------------------------- layering


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", ["store.py", "registry.py", "storedir.py", "metadata.py"])
def test_the_storage_level_store_imports_no_client(module: str) -> None:
    imported = _imported_modules(PACKAGE / module)
    upward = sorted(n for n in imported if n == "logstore.client" or n.startswith(
        ("logstore.client.", "logstore.embedded")
    ))
    assert upward == [], f"logstore/{module} imports {upward}"


def test_the_import_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from logstore.client import admin\nimport logstore.client.producer\n")
    assert {"logstore.client", "logstore.client.producer"} <= _imported_modules(module)


def test_the_facade_store_has_the_client_helpers_and_the_storage_store_does_not(
    tmp_path: Path,
) -> None:
    with logstore.open(tmp_path / "s") as store:
        assert isinstance(store, logstore.store.Store)
        store.create_topic("t", 1)
        with store.producer() as producer:
            producer.send("t", b"v").result()
        assert store.list_groups() == []
    assert logstore.Store is logstore.embedded.Store
    for name in ("producer", "consumer", "list_groups", "describe_group", "reset_offsets",
                 "delete_group"):
        assert hasattr(logstore.Store, name)
        assert not hasattr(logstore.store.Store, name), name
    with logstore.store.open(tmp_path / "s") as plain:
        assert type(plain) is logstore.store.Store
