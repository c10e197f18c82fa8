"""``logstore mirror SRC DST`` (issue 17) across processes: the command line, SIGKILLs at
random points (20 in forked processes, a few of the real command), a graceful SIGTERM, and
the acceptance runs (1,000,000 records; embedded -> Kafka -> embedded) as soak tests.

Every run ends with the same checks: the destination holds the source's records, one for
one (keys, values, timestamps, headers), and the consumer group that had read half of the
source has exactly the same records left to read on the destination (its offsets were
translated exactly: nothing skipped, nothing read twice)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import logstore
from logstore.backend import backend_for
from logstore.client.backend import Backend
from logstore.patterns.mirror import Mirror, checkpoint_group
from logstore_cli.main import cli
from logstore_cli.mirror import default_name, mirror
from tests.mirror_support import committed, consume_half, counts, dump, fill, rest_of_group

TOPIC = "events"
GROUP = "readers"


def run_cli(*args: str) -> tuple[int, str, str]:
    """``logstore mirror ARGS`` through CliRunner."""
    if "mirror" in cli.commands:
        result = CliRunner().invoke(cli, ["mirror", *args])
    else:  # not registered in cli/main.py yet: the command itself
        result = CliRunner().invoke(mirror, list(args))
    return result.exit_code, result.stdout, result.stderr


def mirror_command() -> list[str]:
    """The mirror as a command for a subprocess."""
    logstore_bin = Path(sys.executable).parent / "logstore"
    if "mirror" in cli.commands and logstore_bin.exists():
        return [str(logstore_bin), "mirror"]
    return [sys.executable, "-m", "logstore_cli.mirror"]


def make_source(path: Path, records: int, partitions: int = 8, topic: str = TOPIC) -> None:
    """A source store: ``records`` records over ``partitions`` partitions, and group
    GROUP that has read and committed half of them."""
    with logstore.open(path) as store:
        store.create_topic(topic, partitions=partitions, retention_ms=86_400_000 * 365)
        fill(store, topic, records)
        consume_half(store, GROUP, [topic], records // 2)


def assert_mirrored(src: Path | Backend, dst: Path | Backend, topic: str = TOPIC) -> None:
    """The destination holds the source's records, and GROUP has the same left to read."""
    wait = {side: 0 if isinstance(side, Path) else 2000 for side in (src, dst)}  # Kafka's
    with _backend(src) as source, _backend(dst) as target:
        copied, original = dump(target, topic, wait_ms=wait[dst]), dump(source, topic)
        assert counts(copied) == counts(original)
        assert copied == original
        assert committed(target, GROUP, topic), "the group was not translated"
        left = rest_of_group(target, GROUP, topic, wait[dst])
        expected = rest_of_group(source, GROUP, topic, wait[src])
        assert counts(left) == counts(expected)
        assert left == expected


class _backend:  # noqa: N801 (a context manager used like a function)
    def __init__(self, where: Path | Backend) -> None:
        self.where = where
        self.store: logstore.Store | None = None

    def __enter__(self) -> Backend:
        if isinstance(self.where, Path):
            self.store = logstore.open(self.where, maintenance=False)
            return backend_for(self.store)
        return self.where

    def __exit__(self, *exc: object) -> None:
        if self.store is not None:
            self.store.close()


# --------------------------------------------------------------------------- the command


def test_mirror_command_copies_translates_and_says_what_it_did(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_source(src, 2000, partitions=3)

    code, out, err = run_cli(str(src), str(dst), "--from-beginning", "-q")

    assert code == 0, err
    assert "mirrored 2,000 record(s)" in out
    assert "created topic(s): events" in out
    assert "group 'readers': offsets of" in out
    assert_mirrored(src, dst)
    code, out, _ = run_cli(str(src), str(dst), "-q")  # again: nothing new
    assert code == 0 and "mirrored 0 record(s)" in out
    with logstore.open(dst) as store:
        assert checkpoint_group(default_name("dir:" + os.path.realpath(src))) in \
            store.list_groups()


def test_mirror_command_without_from_beginning_starts_at_the_end_and_says_so(
    tmp_path: Path,
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_source(src, 100, partitions=1)

    code, out, _ = run_cli(str(src), str(dst), "--no-groups", "--name", "n")

    assert code == 0
    assert "mirrored 0 record(s)" in out
    assert "started at the source's end" in out and "--from-beginning" in out
    code, out, _ = run_cli(str(src), str(dst), "--no-groups", "--name", "n",
                           "--from-beginning")
    assert code == 0 and "mirrored 100 record(s)" in out


def test_mirror_command_errors_are_one_line(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_source(src, 10, partitions=2)
    with logstore.open(tmp_path / "narrow") as store:
        store.create_topic(TOPIC, partitions=4)
    (tmp_path / "empty").mkdir()

    cases = {
        "no store at": (str(tmp_path / "missing"), str(dst)),
        "SRC must be a logstore data directory": (str(tmp_path / "empty"), str(dst)),
        "same store": (str(src), str(src)),
        "has 4 partitions, the source 2": (str(src), str(tmp_path / "narrow")),
        "bad topics pattern": (str(src), str(dst), "--topics", "("),
    }
    for expected, args in cases.items():
        code, out, err = run_cli(*args)
        assert code == 1, (expected, out, err)
        assert expected in err and len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in out + err
    assert not (tmp_path / "missing").exists()
    assert os.listdir(tmp_path / "empty") == []


# --------------------------------------------------------------------------- SIGKILL


class _KillAt:
    """The destination backend of a forked mirror: SIGKILLs its own process at the
    ``n``-th append or checkpoint, just before or just after it."""

    def __init__(self, backend: Backend, n: int, after: bool) -> None:
        self._backend = backend
        self._n = n
        self._after = after
        self._calls = 0

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._backend, name)
        if name not in ("append", "commit_offsets"):
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls += 1
            if self._calls == self._n and not self._after:
                os.kill(os.getpid(), signal.SIGKILL)
            result = found(*args, **kwargs)
            if self._calls == self._n:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return call


def _forked_mirror(src: Path, dst: Path, kill: tuple[int, bool] | None) -> int:
    """Run a mirror in a forked child (killed at ``kill``'s call, if given); its pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:  # the child: never returns into pytest
        with logstore.open(src, maintenance=False) as s, logstore.open(dst) as d:
            target: Backend = backend_for(d)
            if kill is not None:
                target = _KillAt(target, *kill)  # type: ignore[assignment]
            Mirror(backend_for(s), target, name="m", from_beginning=True,
                   batch_records=50).run()
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


@pytest.mark.slow
def test_mirror_killed_20_times_at_random_points_ends_equal_to_the_source(
    tmp_path: Path,
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_source(src, 20_000)
    rng = random.Random(17)
    kills = 0
    for i in range(20):
        with logstore.open(src, maintenance=False) as store:  # the source grows meanwhile
            fill(store, TOPIC, 1000, start=20_000 + 1000 * i)
        if i % 2:  # at a seeded append or checkpoint, before or after it
            pid = _forked_mirror(src, dst, (rng.randint(1, 30), rng.random() < 0.5))
        else:  # at a seeded moment, maybe in the middle of an append
            pid = _forked_mirror(src, dst, None)
            time.sleep(rng.uniform(0.002, 0.03))
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 0, status
        kills += os.WIFSIGNALED(status)

    with logstore.open(src, maintenance=False) as s, logstore.open(dst) as d:
        stats = Mirror(backend_for(s), backend_for(d), name="m").run()
        progress = committed(backend_for(d), checkpoint_group("m"), TOPIC)
        ends = {p: backend_for(s).offset_range(logstore.TopicPartition(TOPIC, p))[1]
                for p in range(8)}
    assert kills >= 15
    assert stats.copied > 0
    assert progress == ends
    assert_mirrored(src, dst)


@pytest.mark.slow
def test_mirror_command_resumes_after_sigkill_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_source(src, 5000)
    rng = random.Random(3)
    follow = [*mirror_command(), str(src), str(dst), "--from-beginning", "-f", "-q",
              "--batch-records", "100", "--name", "cli"]
    for i in range(3):
        pipe = subprocess.PIPE if i == 2 else subprocess.DEVNULL
        proc = subprocess.Popen(follow, stdout=pipe, stderr=pipe)
        time.sleep(rng.uniform(0.3, 0.6))
        with logstore.open(src, maintenance=False) as store:  # while it runs
            fill(store, TOPIC, 300, start=5000 + 300 * i)
        time.sleep(rng.uniform(0.0, 0.2))
        if i < 2:
            proc.kill()
            assert proc.wait(10) == -signal.SIGKILL
        else:  # SIGTERM once it has caught up (it is following: its handler is in place,
            # however slowly it started on a loaded machine)
            _until_copied(dst, 5000 + 300 * (i + 1))
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
            assert proc.returncode == 0, err
            assert b"stopped: progress is saved" in out
    done = subprocess.run([*mirror_command(), str(src), str(dst), "-q", "--name", "cli"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert_mirrored(src, dst)


def _until_copied(dst: Path, records: int, timeout_s: float = 60) -> None:
    """Wait until ``dst`` holds ``records`` records of the topic (a following mirror has
    copied them)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if dst.exists():
            with logstore.open(dst, maintenance=False) as store:
                if store.has_topic(TOPIC):
                    backend = backend_for(store)
                    held = sum(
                        backend.offset_range(logstore.TopicPartition(TOPIC, p))[1]
                        for p in range(backend.topic_metadata(TOPIC).partitions)
                    )
                    if held >= records:
                        return
        assert time.monotonic() < deadline, f"the mirror did not copy {records} records"
        time.sleep(0.1)


@pytest.mark.soak
def test_acceptance_1m_records_8_partitions_killed_20_times(tmp_path: Path) -> None:
    """Issue 17's acceptance, local -> local: 1,000,000 records over 8 partitions with a
    group half-way; the command SIGKILLed at 20 random moments, then run to the end
    (about 30 s here)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_source(src, 1_000_000)
    rng = random.Random(1_000_000)
    command = [*mirror_command(), str(src), str(dst), "--from-beginning", "-q"]
    for _ in range(20):
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.5))
        proc.kill()
        proc.wait(30)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert_mirrored(src, dst)


# --------------------------------------------------------------------------- Kafka


@pytest.fixture
def kafka(kafka_broker: Any) -> Iterator[Any]:
    """A KafkaStore on the test broker (skipped without the Kafka backend)."""
    pytest.importorskip("logstore.backend.kafka")
    cluster: Any = logstore.open("kafka://" + kafka_broker.bootstrap)
    try:
        yield cluster
    finally:
        cluster.close()


def _via_kafka(tmp_path: Path, kafka: Any, records: int, kills: int) -> None:
    """embedded -> Kafka -> a second embedded store; each hop's command is SIGKILLed
    ``kills`` times at random moments before a run to the end."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    unique = uuid.uuid4().hex[:8]
    topic = f"events-{unique}"  # the broker outlives the test: names of its own
    make_source(src, records, topic=topic)
    url = "kafka://" + kafka.backend.bootstrap_servers
    rng = random.Random(records)
    for source, target, name, check in ((src, url, "a", kafka.backend), (url, dst, "b", dst)):
        command = [*mirror_command(), str(source), str(target), "--from-beginning", "-q",
                   "--topics", topic, "--groups", GROUP, "--name", f"{name}-{unique}"]
        for _ in range(kills):
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(1.0, 4.0))
            proc.kill()
            proc.wait(30)
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800,
                              check=False)
        assert done.returncode == 0, done.stderr
        assert_mirrored(src, check, topic)


@pytest.mark.kafka
def test_mirror_embedded_to_kafka_to_embedded(tmp_path: Path, kafka: Any) -> None:
    _via_kafka(tmp_path, kafka, 4000, kills=0)


@pytest.mark.kafka
@pytest.mark.soak
def test_acceptance_1m_records_through_kafka_killed_20_times(
    tmp_path: Path, kafka: Any
) -> None:
    """Issue 17's acceptance: 1,000,000 records over 8 partitions with a group half-way,
    embedded -> Kafka -> embedded, each hop SIGKILLed 20 times (a few minutes)."""
    _via_kafka(tmp_path, kafka, 1_000_000, kills=20)
