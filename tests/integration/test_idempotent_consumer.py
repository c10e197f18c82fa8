"""The idempotent consumer (issue 16): processed-key marks in SQLite, their bound, and a
consumer SIGKILLed between processing and commit doing each side effect once on replay."""

from __future__ import annotations

import signal
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import pytest

import logstore
from logstore.errors import InvalidConfigError, StoreClosedError
from logstore.patterns.idempotent import MESSAGE_ID, ProcessedKeys, record_id
from logstore.types import ConsumerRecord
from tests.integration.workers import Worker

RR_WORKER = str(Path(__file__).with_name("rr_worker.py"))
RECORDS = 50


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


def test_processed_keys_once_is_true_the_first_time_only_and_survives_reopen(
    tmp_path: Path,
) -> None:
    db = tmp_path / "keys.db"
    calls = []
    with ProcessedKeys(db) as keys:
        with keys.once("a") as first:
            assert first
        with keys.once("a") as first:
            assert not first
        assert keys.process_once("b", lambda: calls.append("b") or 7) == (True, 7)
        assert keys.process_once("b", lambda: calls.append("again")) == (False, None)
    with ProcessedKeys(db) as keys:
        assert keys.seen("a") and keys.seen("b") and not keys.seen("c")
        assert len(keys) == 2
    assert calls == ["b"]
    with pytest.raises(StoreClosedError):
        keys.seen("a")


def test_processed_keys_body_that_raises_marks_nothing(tmp_path: Path) -> None:
    with ProcessedKeys(tmp_path / "keys.db") as keys:
        with pytest.raises(RuntimeError), keys.once("a") as first:
            assert first
            raise RuntimeError("side effect failed")
        assert not keys.seen("a")
        with keys.once("a") as first:
            assert first  # tried again


def test_processed_keys_once_with_conn_commits_side_effect_and_mark_together(
    tmp_path: Path,
) -> None:
    with ProcessedKeys(tmp_path / "keys.db") as keys:
        conn = keys.connect()
        conn.execute("CREATE TABLE effects (id TEXT)")
        conn.commit()
        with pytest.raises(RuntimeError), keys.once("a", conn) as first:
            assert first
            conn.execute("INSERT INTO effects VALUES ('a')")
            raise RuntimeError("after the side effect, before the commit")
        assert not keys.seen("a")  # rolled back: the effect and the mark
        assert conn.execute("SELECT COUNT(*) FROM effects").fetchone()[0] == 0
        for _ in range(2):
            with keys.once("a", conn) as first:
                if first:
                    conn.execute("INSERT INTO effects VALUES ('a')")
        assert keys.seen("a")
        assert conn.execute("SELECT COUNT(*) FROM effects").fetchone()[0] == 1
        other = sqlite3.connect(tmp_path / "other.db")
        with pytest.raises(InvalidConfigError, match=r"keys\.connect"), keys.once("x", other):
            pass
        other.close()
        conn.close()


def test_processed_keys_forget_expired_and_surplus_marks(tmp_path: Path) -> None:
    clock = Clock()
    with ProcessedKeys(
        tmp_path / "keys.db", ttl_ms=1000, max_keys=5, prune_every=1, clock=clock
    ) as keys:
        for i in range(8):
            clock.now += 10
            keys.mark(f"k{i}")
        assert len(keys) == 5 and not keys.seen("k2") and keys.seen("k3")  # the newest 5
        clock.now += 1001  # k7, the newest, is 1,001 ms old now: every mark expired
        keys.mark("k8")
        assert len(keys) == 1 and keys.seen("k8")
    with pytest.raises(InvalidConfigError):
        ProcessedKeys(tmp_path / "keys.db", ttl_ms=0)


def test_record_id_prefers_the_message_id_header() -> None:
    plain = ConsumerRecord("t", 1, 42, 0, None, b"v", ())
    tagged = plain._replace(headers=[(MESSAGE_ID, b"order-17")])

    assert record_id(plain) == "t/1/42"
    assert record_id(tagged) == "order-17"
    assert record_id(tagged, header=None) == "t/1/42"


def run_idem(data: str, keys: Path, effects: Path, crash_at: int, mode: str) -> Worker:
    worker = Worker([
        sys.executable, RR_WORKER, "idem", data, "orders", "billing", str(keys),
        str(effects), str(crash_at), mode,
    ])
    worker.communicate(timeout=60)
    return worker


@pytest.mark.parametrize("mode", ["file", "sql"])
def test_idempotent_consumer_killed_between_processing_and_commit_does_each_effect_once(
    tmp_path: Path, mode: str
) -> None:
    data = str(tmp_path / "store")
    keys, effects = tmp_path / "keys.db", tmp_path / "effects.txt"
    with logstore.open(data) as store:
        store.create_topic("orders", partitions=1)
        with store.producer() as producer:
            for i in range(RECORDS):
                producer.send("orders", b"order-%d" % i)

    crashed = run_idem(data, keys, effects, 23, mode)  # polls of 7, commits after each
    assert crashed.returncode == -signal.SIGKILL, crashed.communicate()[1]
    replay = run_idem(data, keys, effects, 0, mode)
    out, err = replay.communicate()
    assert replay.returncode == 0, err

    # the replay started at the last commit (21), so records 21..22 were delivered again
    assert out.split()[-1] == str(RECORDS - 21)
    if mode == "file":
        done = effects.read_text().split()
    else:
        conn = sqlite3.connect(keys)
        done = [row[0] for row in conn.execute("SELECT id FROM effects")]
        conn.close()
    counts = Counter(done)
    assert sorted(counts) == sorted(f"orders/0/{i}" for i in range(RECORDS))
    assert set(counts.values()) == {1}  # once each, though 2 were handled twice
