"""``logstore topics``, ``produce`` and ``consume`` through CliRunner and real pipes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import logstore
from logstore_cli.main import cli


def _run(data: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--data-dir", str(data), *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_topics_commands_create_list_describe_alter_grow_and_delete(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert _run(data, "topics", "create", "orders", "-p", "2", "-c", "retention_ms=1000")[0] == 0
    _, out, _ = _run(data, "topics", "list", "--json")
    assert json.loads(out) == [{"name": "orders", "partitions": 2}]
    _, out, _ = _run(data, "topics", "describe", "orders", "--json")
    described = json.loads(out)
    assert described["config"]["retention_ms"] == 1000
    assert [p["partition"] for p in described["partitions"]] == [0, 1]
    assert _run(data, "topics", "alter", "orders", "-c", "retention_ms=5")[0] == 0
    assert _run(data, "topics", "add-partitions", "orders", "--total", "3")[0] == 0
    _, out, _ = _run(data, "topics", "describe", "orders")
    assert "PARTITION" in out and "retention_ms=5" in out
    assert _run(data, "topics", "delete", "orders")[0] == 0
    assert json.loads(_run(data, "topics", "list", "--json")[1]) == []


def test_user_errors_print_one_line_and_exit_non_zero(tmp_path: Path) -> None:
    data = tmp_path / "d"
    for args in (
        ("topics", "describe", "missing"),
        ("topics", "create", "../x"),
        ("topics", "create", "t", "-c", "flush=sometimes"),
        ("consume", "missing"),
    ):
        code, out, err = _run(data, *args)
        assert code != 0, args
        assert "Traceback" not in out + err
        assert len(err.strip().splitlines()) == 1, (args, err)


def test_produce_and_consume_keys_headers_and_formats(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _run(data, "topics", "create", "t")
    code, _, err = _run(
        data, "produce", "t", "--key-separator", ":", "--header", "src=cli", stdin="a:1\nb:2\n"
    )
    assert code == 0 and "wrote 2 record(s)" in err
    code, out, _ = _run(data, "consume", "t", "--from-beginning", "--print-key", "--print-offset")
    assert out == "Offset:0\ta\t1\nOffset:1\tb\t2\n"
    code, out, _ = _run(data, "consume", "t", "--partition", "0", "--offset", "1", "--format",
                        "json")
    row = json.loads(out)
    assert (row["offset"], row["key"], row["value"], row["headers"]) == (1, "b", "2",
                                                                         {"src": "cli"})
    code, _, err = _run(data, "produce", "t", "--key-separator", ":", stdin="no-separator\n")
    assert code != 0 and "line 1" in err
    lines = '{"key": "k", "value": "v", "timestamp": 5}\n'
    assert _run(data, "produce", "t", "--format", "json", stdin=lines)[0] == 0
    with logstore.open(data) as store:
        last = store.read("t", 0, 2)[0]
        assert (last.key, last.value, last.timestamp) == (b"k", b"v", 5)


def test_consume_with_group_resumes_where_it_left_off(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _run(data, "topics", "create", "t", "-p", "2")
    _run(data, "produce", "t", stdin="".join(f"{i}\n" for i in range(10)))
    first = _run(data, "consume", "t", "--group", "g", "--from-beginning", "--max-messages", "4")
    assert len(first[1].splitlines()) == 4
    rest = _run(data, "consume", "t", "--group", "g", "--from-beginning")
    assert len(rest[1].splitlines()) == 6
    assert sorted(first[1].split() + rest[1].split(), key=int) == [str(i) for i in range(10)]


def _logstore() -> list[str]:
    exe = Path(sys.executable).with_name("logstore")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "logstore_cli.main"]


def test_produce_consume_pipe_of_100000_lines(tmp_path: Path) -> None:
    env = {**os.environ, "LOGSTORE_DATA_DIR": str(tmp_path / "d")}
    logstore_cmd = " ".join(_logstore())

    def shell(command: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["bash", "-c", command], env=env, capture_output=True,
                              timeout=300, check=False)

    missing = shell(f"seq 1 100000 | {logstore_cmd} produce t")
    assert missing.returncode == 1  # the topic does not exist yet: one clear line
    assert b"unknown topic" in missing.stderr and b"Traceback" not in missing.stderr
    assert shell(f"{logstore_cmd} topics create t -p 3").returncode == 0
    assert shell(f"seq 1 100000 | {logstore_cmd} produce t").returncode == 0
    counted = shell(f"{logstore_cmd} consume t --from-beginning | wc -l")
    assert counted.stdout.strip() == b"100000"


def test_consume_follow_sees_records_produced_by_another_process(tmp_path: Path) -> None:
    env = {**os.environ, "LOGSTORE_DATA_DIR": str(tmp_path / "d")}
    subprocess.run([*_logstore(), "topics", "create", "t"], env=env, check=True,
                   capture_output=True)
    follower = subprocess.Popen([*_logstore(), "consume", "t", "-f", "--max-messages", "3"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    subprocess.run([*_logstore(), "produce", "t"], input=b"x\ny\nz\n", env=env, check=True,
                   capture_output=True)
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert out.split() == [b"x", b"y", b"z"]


_MEASURED = """
import sys
from logstore_cli.main import cli
try:
    cli(prog_name="logstore")
finally:
    # VmHWM: this process image's peak RSS (ru_maxrss would carry the forking parent's)
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    print(f"maxrss={peak}", file=sys.stderr)
"""


def _peak_rss_kib(args: list[str], stdin_path: Path | None, stdout_path: Path) -> int:
    """Run ``logstore ARGS`` (stdin from a file, stdout to a file); its peak RSS in KiB."""
    with open(stdout_path, "wb") as out, (
        open(stdin_path, "rb") if stdin_path else open(os.devnull, "rb")
    ) as inp:
        proc = subprocess.run(
            [sys.executable, "-c", _MEASURED, *args], stdin=inp, stdout=out,
            stderr=subprocess.PIPE, check=False,
        )
    assert proc.returncode == 0, (args, proc.stderr)
    return int(proc.stderr.decode().rsplit("maxrss=", 1)[1])


@pytest.mark.slow
def test_produce_and_consume_memory_stays_flat_from_100k_to_1m_lines(tmp_path: Path) -> None:
    peaks = {}
    for lines in (100_000, 1_000_000):
        data = tmp_path / f"d{lines}"
        source = tmp_path / f"in{lines}"
        source.write_bytes(b"".join(b"%d\n" % i for i in range(1, lines + 1)))
        _peak_rss_kib(["--data-dir", str(data), "topics", "create", "t", "-p", "3"], None,
                      tmp_path / "create.out")
        produced = _peak_rss_kib(["--data-dir", str(data), "produce", "t"], source,
                                 tmp_path / "produce.out")
        sink = tmp_path / f"out{lines}"
        consumed = _peak_rss_kib(["--data-dir", str(data), "consume", "t",
                                  "--from-beginning"], None, sink)
        assert sorted(sink.read_bytes().split()) == sorted(source.read_bytes().split())
        peaks[lines] = (produced, consumed)
    (p_small, c_small), (p_big, c_big) = peaks[100_000], peaks[1_000_000]
    # Ten times the input costs no more than the producer's and consumer's fixed buffers
    # (batches and fetches per partition, thread arenas), which 100k lines do not fill yet:
    # measured 43 -> 60 MiB (produce) and 43 -> 45 MiB (consume); 3M lines stay at 60 MiB.
    assert p_big - p_small < 24 * 1024, peaks
    assert c_big - c_small < 8 * 1024, peaks


# ------------------------------------------------------------------ errors in the CLI's words


def test_topics_create_on_an_existing_topic_names_the_flag_and_the_real_partitions(
    tmp_path: Path,
) -> None:
    data = tmp_path / "d"
    assert _run(data, "topics", "create", "t", "-p", "3")[0] == 0
    code, out, err = _run(data, "topics", "create", "t")
    assert code == 1 and out == ""
    assert err == ("Error: topic 't' already exists, with 3 partition(s) (add --if-not-exists "
                   "to accept an existing topic)\n")
    code, out, err = _run(data, "topics", "create", "t", "--if-not-exists", "-p", "5")
    assert code == 0, err
    assert out == "topic 't' already exists, with 3 partition(s); left as it is\n"
    with logstore.open(data) as store:
        assert store.topic("t").num_partitions == 3


_FLAG_ERRORS = [
    (("topics", "create", "u", "-p", "0"),
     "Error: --partitions 0 is out of range (use a value in [1, 100000])"),
    (("topics", "create", "u", "-c", "partitions=2"),
     "Error: give the partition count with --partitions, not --config"),
    (("topics", "alter", "t", "-c", "partitions=5"),
     "Error: the partition count is not a setting to alter: use 'logstore topics "
     "add-partitions t --total N' (partitions can only be added)"),
    (("topics", "add-partitions", "t", "--total", "1"),
     "Error: topic 't' has 2 partition(s): --total must be more than that, not 1 "
     "(partitions can only be added)"),
    (("produce", "t", "--file", "no-such-file"),  # an OSError, not a traceback
     "Error: cannot use no-such-file: No such file or directory"),
]


@pytest.mark.parametrize(("args", "expected"), _FLAG_ERRORS,
                         ids=[" ".join(args) for args, _ in _FLAG_ERRORS])
def test_errors_name_the_cli_flags_not_python_arguments(
    tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    data = tmp_path / "d"
    _run(data, "topics", "create", "t", "-p", "2")
    code, _, err = _run(data, *args)
    assert code == 1
    assert err.splitlines() == [expected]
    for python_name in ("exist_ok", "add_partitions", "=True", "None"):
        assert python_name not in err


def test_a_store_held_exclusively_is_reported_without_python_arguments(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _run(data, "topics", "create", "t")
    with logstore.open(data, exclusive=True):
        code, _, err = _run(data, "topics", "list")
    assert code == 1
    assert err.splitlines() == [
        f"Error: {data} is in use by a process that needs it to itself (such as 'logstore "
        f"verify', or a program that opened the store exclusively): try again when it is done"
    ]


_PRINTING = [
    ("consume", "t", "--from-beginning"),
    ("topics", "list"),
    ("topics", "describe", "t"),
    ("groups", "list"),
    ("groups", "describe", "g"),
    ("inspect", "t", "--records"),
    ("replay", "t", "--from-time", "1d", "--max-speed"),
    ("verify",),
]


@pytest.fixture(scope="module")
def printing_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose every printing command has more to say than a pipe holds (64 KiB)."""
    data = tmp_path_factory.mktemp("printing") / "d"
    with logstore.open(data) as store:
        store.create_topic("t", 2)
        store.append_many("t", [(b"v%05d" % i, b"k%d" % i, None, None, None)
                                for i in range(5000)])
        with store.consumer(["t"], group_id="g", auto_offset_reset="earliest") as consumer:
            consumer.poll(timeout_ms=1000, max_records=10)
            consumer.commit()
    return data


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("args", _PRINTING, ids=" ".join)
def test_printing_commands_report_a_full_stdout_in_one_line(
    printing_store: Path, args: tuple[str, ...]
) -> None:
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([*_logstore(), "--data-dir", str(printing_store), *args],
                              stdout=full, stderr=subprocess.PIPE, timeout=120, check=False)
    assert proc.returncode == (3 if args[0] == "verify" else 1), proc.stderr
    assert proc.stderr.decode().splitlines() == [
        "Error: cannot write to stdout: No space left on device"
    ]


@pytest.mark.parametrize("args", _PRINTING, ids=" ".join)
def test_printing_commands_end_quietly_with_141_when_the_stdout_pipe_closes(
    printing_store: Path, args: tuple[str, ...]
) -> None:
    proc = subprocess.Popen([*_logstore(), "--data-dir", str(printing_store), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader (think "| head -1") is gone before the first write
    err = proc.stderr.read()
    proc.wait(timeout=120)
    proc.stderr.close()
    assert (proc.returncode, err.decode()) == (141, "")


def test_a_closed_pipe_mid_output_ends_quietly_like_head_does(printing_store: Path) -> None:
    command = " ".join([*_logstore(), "--data-dir", str(printing_store), "inspect", "t",
                        "--records"])
    proc = subprocess.run(["bash", "-c", f"{command} | head -1; echo ${{PIPESTATUS[0]}} >&2"],
                          capture_output=True, timeout=120, check=False)
    assert proc.stdout.decode().startswith("Dumping ")
    assert proc.stderr.decode() == "141\n"


def _records_in(data: Path, topic: str) -> int:
    with logstore.open(data) as store:
        return sum(p.log_end_offset for p in store.describe_topic(topic).partitions)


def test_produce_to_a_topic_another_process_deletes_says_it_was_deleted(tmp_path: Path) -> None:
    data = tmp_path / "d"
    env = {**os.environ, "LOGSTORE_DATA_DIR": str(data)}
    subprocess.run([*_logstore(), "topics", "create", "t", "-p", "3"], env=env, check=True,
                   capture_output=True)
    producer = subprocess.Popen([*_logstore(), "produce", "t", "--key-separator", ":"],
                                stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert producer.stdin is not None
    producer.stdin.write(b"a:1\na:2\na:3\n")  # one key: one partition, opened by the producer
    producer.stdin.flush()
    deadline = time.monotonic() + 60
    while _records_in(data, "t") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _records_in(data, "t") == 3
    subprocess.run([*_logstore(), "topics", "delete", "t"], env=env, check=True,
                   capture_output=True)
    # the same partition (open in the producer) and others (not opened yet)
    producer.stdin.write(b"".join(b"k%d:%d\n" % (i, i) for i in range(20)))
    _, err = producer.communicate(timeout=120)
    assert producer.returncode == 1
    lines = err.decode().splitlines()
    assert len(lines) == 1 and "topic 't' was deleted" in lines[0], lines
    assert "fsync" not in lines[0] and "Traceback" not in lines[0]
    # what was written, and where to resume: none of the 20 lines sent after the delete
    assert lines[0].startswith("Error: stopped at input line 4: topic 't' was deleted")
    assert re.search(r"; 3 record\(s\) acknowledged, \d+ not; resume with tail -n \+4$",
                     lines[0]), lines
    assert not [name for name in os.listdir(data) if name.startswith("t-")]  # no orphans


# ------------------------------------------------------------------ produce: partial work


def _lines_of(data: Path, topic: str) -> list[bytes]:
    """Every value of ``topic``, in offset order within each partition, sorted."""
    with logstore.open(data) as store:
        values: list[bytes] = []
        for info in store.describe_topic(topic).partitions:
            offset = info.log_start_offset
            while offset < info.log_end_offset:
                records = store.read(topic, info.partition, offset)
                values += [r.value or b"" for r in records]
                offset = records[-1].offset + 1
        return sorted(values)


def test_produce_stops_at_a_bad_line_saying_what_was_written_and_where_to_resume(
    tmp_path: Path,
) -> None:
    data = tmp_path / "d"
    _run(data, "topics", "create", "t", "-p", "3")
    good = [f"k{i}:v{i:03d}" for i in range(1, 101)]
    given = [*good[:56], "no separator here", *good[57:]]
    code, out, err = _run(data, "produce", "t", "--key-separator", ":",
                          stdin="".join(f"{line}\n" for line in given))
    assert (code, out) == (1, "")
    assert err == ("Error: stopped at input line 57: no key separator ':'; 56 record(s) "
                   "acknowledged; resume with tail -n +57\n")
    assert _lines_of(data, "t") == [f"v{i:03d}".encode() for i in range(1, 57)]
    # the rule holds: the fixed input from line 57 on completes the topic, once each
    fixed = [*good[:56], "k57:v057", *good[57:]]
    code, _, err = _run(data, "produce", "t", "--key-separator", ":",
                        stdin="".join(f"{line}\n" for line in fixed[56:]))
    assert code == 0 and "wrote 44 record(s)" in err
    assert _lines_of(data, "t") == [f"v{i:03d}".encode() for i in range(1, 101)]


def test_produce_stops_at_a_line_too_large_for_the_topic(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _run(data, "topics", "create", "t", "-p", "2", "-c", "max_message_bytes=1000")
    lines = [f"{i}" for i in range(1, 21)]
    lines[10] = "x" * 2000
    code, _, err = _run(data, "produce", "t", stdin="".join(f"{line}\n" for line in lines))
    assert code == 1
    assert err.startswith("Error: stopped at input line 11: the line is too large: its "
                          "record takes ")
    assert "over the topic's max_message_bytes (1000; raise it with 'logstore topics alter" in err
    assert err.endswith("; 10 record(s) acknowledged, 1 not; resume with tail -n +11\n")
    assert len(err.splitlines()) == 1
    assert _lines_of(data, "t") == sorted(f"{i}".encode() for i in range(1, 11))


def test_produce_skip_bad_lines_counts_and_lists_them_and_exits_0(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _run(data, "topics", "create", "t", "-c", "max_message_bytes=1000")
    lines = [f"k:{i}" for i in range(1, 31)]
    for i in (3, 7, 11, 15, 19, 23):
        lines[i - 1] = f"bad {i}"
    lines[26] = "k:" + "x" * 2000  # line 27: too large for the topic
    code, out, err = _run(data, "produce", "t", "--key-separator", ":", "--skip-bad-lines",
                          stdin="".join(f"{line}\n" for line in lines))
    assert (code, out) == (0, "")
    assert err.splitlines() == [
        "wrote 23 record(s) to 't' (p0: 23)",
        "skipped 7 bad line(s) (line 3, 7, 11, 15, 19, ...; line 3: no key separator ':')",
    ]
    kept = [str(i).encode() for i in range(1, 31) if i not in (3, 7, 11, 15, 19, 23, 27)]
    assert _lines_of(data, "t") == sorted(kept)


def test_produce_ctrl_c_flushes_what_was_sent_and_says_where_to_resume(tmp_path: Path) -> None:
    data = tmp_path / "d"
    env = {**os.environ, "LOGSTORE_DATA_DIR": str(data)}
    subprocess.run([*_logstore(), "topics", "create", "t", "-p", "2"], env=env, check=True,
                   capture_output=True)
    producer = subprocess.Popen([*_logstore(), "produce", "t"], stdin=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
    assert producer.stdin is not None and producer.stderr is not None
    producer.stdin.write(b"1\n2\n3\n4\n5\n")
    producer.stdin.flush()  # and the input stays open: produce waits for more
    deadline = time.monotonic() + 60
    while _records_in(data, "t") < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    producer.send_signal(signal.SIGINT)
    assert producer.wait(timeout=30) == 130  # at once, though stdin never ended
    err = producer.stderr.read().decode()
    producer.stdin.close()
    producer.stderr.close()
    assert err == ("Error: stopped at input line 6: interrupted (Ctrl-C); 5 record(s) "
                   "acknowledged; resume with tail -n +6\n")
    assert _lines_of(data, "t") == [b"1", b"2", b"3", b"4", b"5"]


def test_produce_json_encodes_non_string_keys_values_and_headers(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _run(data, "topics", "create", "t")
    line = {"key": {"a": 1}, "value": [1, "x"], "headers": {"n": 5, "b": True, "o": {"k": []},
                                                            "none": None, "s": "text"}}
    code, _, err = _run(data, "produce", "t", "--format", "json", "--header", "src=cli",
                        stdin=json.dumps(line) + "\n")
    assert code == 0, err
    with logstore.open(data) as store:
        record = store.read("t", 0, 0)[0]
    assert (record.key, record.value) == (b'{"a": 1}', b'[1, "x"]')
    assert dict(record.headers) == {"src": b"cli", "n": b"5", "b": b"true", "o": b'{"k": []}',
                                    "none": None, "s": b"text"}


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ('{"vaule": "typo"}', "unknown field(s) 'vaule' (a record has the fields key, value, "
                              "headers, timestamp)"),
        ('{"value": NaN}', "NaN is not JSON (a number must be finite)"),
        ('{"value": [Infinity]}', "Infinity is not JSON (a number must be finite)"),
        ('{"headers": {"h": -Infinity}}', "-Infinity is not JSON (a number must be finite)"),
        ('{"value": 1e999}', "1e999 is too large for a JSON number (a number must be finite)"),
        ('{"timestamp": true}', "timestamp true is not milliseconds since the epoch (an "
                                "integer >= 0)"),
        ('{"timestamp": -1}', "timestamp -1 is not milliseconds since the epoch (an "
                              "integer >= 0)"),
        ('{"headers": [1]}', "headers must be an object of name: value, not [1]"),
        ('"just a string"', "not a JSON object but str (fields: key, value, headers, "
                            "timestamp)"),
    ],
)
def test_produce_json_refuses_bad_lines_naming_the_line(
    tmp_path: Path, line: str, why: str
) -> None:
    data = tmp_path / "d"
    _run(data, "topics", "create", "t")
    code, _, err = _run(data, "produce", "t", "--format", "json",
                        stdin=f'{{"value": "ok"}}\n{line}\n{{"value": "after"}}\n')
    assert code == 1
    assert err == (f"Error: stopped at input line 2: {why}; 1 record(s) acknowledged; "
                   f"resume with tail -n +2\n")
    assert _lines_of(data, "t") == [b"ok"]


def test_produce_refuses_an_empty_key_separator_naming_the_flag(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _run(data, "topics", "create", "t")
    code, _, err = _run(data, "produce", "t", "--key-separator", "", stdin="a:b\n")
    assert code == 1
    assert err == ("Error: --key-separator must not be empty (leave it out to take whole "
                   "lines as values)\n")
    assert _lines_of(data, "t") == []


def test_produce_refuses_a_key_separator_with_json_input(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert _run(data, "topics", "create", "t")[0] == 0
    code, _, err = _run(data, "produce", "t", "--format", "json", "--key-separator", ":",
                        stdin='{"key": "a", "value": "1"}\n')
    assert code != 0 and err.strip().splitlines() == [
        'Error: --key-separator does not apply to --format json (each object has its own '
        '"key"): leave one of them out']
    with logstore.open(data) as store:
        assert store.partition("t", 0).log_end_offset == 0


@pytest.mark.parametrize("line", [
    '{"key": "a", "value": "1", "key": "b"}',
    '{"value": "1", "headers": {"h": "x", "h": "y"}}',
])
def test_produce_refuses_a_json_name_given_twice(tmp_path: Path, line: str) -> None:
    data = tmp_path / "d"
    assert _run(data, "topics", "create", "t")[0] == 0
    code, _, err = _run(data, "produce", "t", "--format", "json", stdin=line + "\n")
    assert code != 0 and "given twice" in err and "line 1" in err, err
