"""``logstore repair`` through click's CliRunner: what it lists, that it changes nothing
until told to, and that the store it leaves opens and verifies clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import logstore
from logstore.types import TopicPartition
from logstore_cli.main import cli


def _run(data: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--data-dir", str(data), *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def _one_line_error(code: int, err: str, *words: str) -> None:
    assert code != 0
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err


def _store(data: Path) -> None:
    """Topic s: 60 records, 10 a batch, in several segments; topic t: 3 records; and
    committed offsets of group g."""
    assert _run(data, "topics", "create", "s", "-c", "segment_bytes=600")[0] == 0
    for chunk in range(6):
        lines = "".join(f"value-{chunk}-{i}\n" for i in range(10))
        assert _run(data, "produce", "s", stdin=lines)[0] == 0
    assert _run(data, "topics", "create", "t")[0] == 0
    assert _run(data, "produce", "t", stdin="a\nb\nc\n")[0] == 0
    assert _run(data, "consume", "s", "--group", "g", "--from-beginning")[0] == 0


def _tree(data: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data)): p.read_bytes() for p in sorted(data.rglob("*"))
            if p.is_file()}


def _logs(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.log"))


def _batch_size(log: Path) -> int:
    return int.from_bytes(log.read_bytes()[8:12], "big") + 12  # batchLength + its prefix


def _damage_second_batch(data: Path) -> tuple[Path, int]:
    """Flip a record byte of the second batch of s-0 (offsets 10-19); returns the file and
    the batch's position."""
    first = _logs(data / "s-0")[0]
    position = _batch_size(first)
    raw = bytearray(first.read_bytes())
    raw[position + 70] ^= 0x01
    first.write_bytes(bytes(raw))
    return first, position


def _values(data: Path, topic: str) -> list[bytes | None]:
    with logstore.open(data) as store:
        plog = store.partition(topic, 0)
        out: list[bytes | None] = []
        offset = plog.log_start_offset
        while offset < plog.log_end_offset:
            records = store.read(topic, 0, offset)
            out += [r.value for r in records]
            offset = records[-1].offset + 1
        return out


def test_repair_of_a_healthy_store_says_nothing_to_repair_and_changes_nothing(
    tmp_path: Path,
) -> None:
    data = tmp_path / "d"
    _store(data)
    before = _tree(data)

    for args in [(), ("--yes",), ("s",), ("t", "--partition", "0", "--yes")]:
        code, out, err = _run(data, "repair", *args)
        assert (code, out, err) == (0, "nothing to repair\n", ""), args

    assert _tree(data) == before


def test_repair_lists_what_it_drops_and_changes_nothing_without_yes(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _store(data)
    log, position = _damage_second_batch(data)
    later = _logs(data / "s-0")[1:]
    assert later
    before = _tree(data)

    code, out, err = _run(data, "repair")

    _one_line_error(code, err, "nothing changed", "re-run with --yes")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("s-0: drops offsets 10..59 ") and "end at offset 10" in lines[0]
    assert lines[1].startswith(f"  cut {log} at position {position}: bytes {position}..")
    assert "offsets 10..19" in lines[1] and "CRC" in lines[1]
    assert "0 batches, 0 records, and " in lines[1] and "damaged bytes" in lines[1]
    assert [line.split(":")[0] for line in lines[2:2 + len(later)]] == [
        f"  delete {p}" for p in later
    ]
    assert "t-0" not in out and "__consumer_offsets" not in out
    assert _tree(data) == before
    assert _run(data, "verify")[0] == 2


def test_repair_with_yes_drops_it_and_the_store_then_verifies_clean_and_opens(
    tmp_path: Path,
) -> None:
    data = tmp_path / "d"
    _store(data)
    _damage_second_batch(data)
    with logstore.open(data) as store, pytest.raises(logstore.CorruptRecordError):
        store.read("s", 0, 10)

    code, out, err = _run(data, "repair", "--yes")

    assert code == 0, out + err
    assert "s-0: repaired; the log ends at offset 10" in out
    assert out.splitlines()[-1].startswith("repaired: dropped ")
    code, out, _ = _run(data, "verify")
    assert code == 0, out
    assert _values(data, "s") == [f"value-0-{i}".encode() for i in range(10)]
    assert _values(data, "t") == [b"a", b"b", b"c"]
    assert _run(data, "produce", "s", stdin="after\n")[0] == 0
    assert _values(data, "s")[10:] == [b"after"]
    assert _run(data, "repair")[1] == "nothing to repair\n"


def test_repair_asks_on_a_terminal_and_a_no_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "d"
    _store(data)
    _damage_second_batch(data)
    before = _tree(data)
    monkeypatch.setattr("logstore_cli.repair._interactive", lambda: True)

    code, out, _ = _run(data, "repair", "s", stdin="n\n")

    assert code == 1 and "Drop " in out and "Aborted" in out + _
    assert _tree(data) == before
    code, out, err = _run(data, "repair", "s", stdin="y\n")
    assert code == 0, out + err
    assert "s-0: repaired" in out
    assert _run(data, "verify")[0] == 0


def _commit_and_die(data: Path) -> None:
    """A real process commits offsets 5 then 7 for group h (two synced batches of the
    committed-offsets log) and dies without closing the store."""
    code = ("import logstore, os, sys\n"
            "from logstore.types import TopicPartition\n"
            "store = logstore.open(sys.argv[1])\n"
            "for offset in (5, 7):\n"
            "    store.offsets.commit('h', {TopicPartition('s', 0): (offset, '')})\n"
            "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code, str(data)], check=True, timeout=60)


def test_repair_of_the_committed_offsets_log(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _store(data)
    _commit_and_die(data)
    log = _logs(data / "__consumer_offsets-0")[-1]
    raw = bytearray(log.read_bytes())
    raw[-5] ^= 0x01  # in the commit of 7
    log.write_bytes(bytes(raw))
    with pytest.raises(logstore.CorruptionError), logstore.open(data) as store:
        store.offsets.group_offsets("h")  # the committed offsets load on first use

    code, out, _ = _run(data, "repair", "s")
    assert (code, out) == (0, "nothing to repair\n")  # a topic's repair leaves it alone
    code, out, err = _run(data, "repair", "--yes")

    assert code == 0, out + err
    assert out.startswith("__consumer_offsets-0: drops offsets ")
    assert "1 batch, 1 record" not in out  # the damaged batch is not counted as sound
    assert _run(data, "verify")[0] == 0
    with logstore.open(data) as store:
        committed = store.offsets.committed("h", TopicPartition("s", 0))
        assert committed is not None and committed.offset == 5
        assert store.partition("s", 0).log_end_offset == 60


def test_repair_refuses_a_store_in_use_unknown_names_and_a_missing_store(
    tmp_path: Path,
) -> None:
    data = tmp_path / "d"
    _store(data)
    _damage_second_batch(data)
    before = _tree(data)
    with logstore.open(data):
        code, _, err = _run(data, "repair", "--yes")
        _one_line_error(code, err, "in use", "repair needs the store to itself")
    for args, words in [
        (("nope",), ["unknown topic 'nope'", "s, t"]),
        (("s", "--partition", "3"), ["partitions 0..0, not 3"]),
    ]:
        code, _, err = _run(data, "repair", *args)
        _one_line_error(code, err, *words)
        assert code == 1
    code, _, err = _run(data, "repair", "--partition", "0")
    assert code == 2 and "--partition needs a TOPIC" in err
    assert _tree(data) == before
    code, _, err = _run(tmp_path / "none", "repair")
    _one_line_error(code, err, "no store")
    assert not (tmp_path / "none").exists()
