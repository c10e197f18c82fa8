"""The command line on a real Kafka cluster (``--bootstrap-server``): the commands that work
the same as on a data directory, and the one-line refusal of the local-only ones.

The broker is shared by the whole test session (and may outlive it): every test uses its
own topics and groups (a uuid suffix) and deletes only those.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import logstore
from logstore import headers as h
from logstore_cli.cluster import CLUSTER_COMMANDS, LOCAL_ONLY
from logstore_cli.main import cli
from tests.kafka_broker import KafkaBroker

ROOT = Path(__file__).resolve().parents[2]


def _invoke(args: list[str], stdin: str | None = None,
            env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, args, input=stdin, env=env, prog_name="logstore")


def _run(bootstrap: str, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = _invoke(["--bootstrap-server", bootstrap, *args], stdin)
    return result.exit_code, result.stdout, result.stderr


def _ok(bootstrap: str, *args: str, stdin: str | None = None) -> tuple[str, str]:
    code, out, err = _run(bootstrap, *args, stdin=stdin)
    assert code == 0, (args, out, err)
    return out, err


def _name(prefix: str) -> str:
    return f"cli-{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def bootstrap(kafka_broker: KafkaBroker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture
def topic(bootstrap: str) -> Iterator[str]:
    """A topic name of this test's own, deleted afterwards if the test made it."""
    name = _name("t")
    yield name
    with logstore.KafkaStore(f"kafka://{bootstrap}") as cluster:
        for made in [n for n in cluster.list_topics() if n.startswith(name)]:
            cluster.delete_topic(made)


@pytest.mark.kafka
def test_topics_create_list_describe_grow_and_delete(bootstrap: str, topic: str) -> None:
    out, _ = _ok(bootstrap, "topics", "create", topic, "-p", "2", "-c", "retention_ms=3600000")
    assert out == f"created topic {topic!r} with 2 partition(s)\n"
    code, _, err = _run(bootstrap, "topics", "create", topic)
    assert code == 1 and "already exists, with 2 partition(s)" in err and "--if-not-exists" in err
    assert "left as it is" in _ok(bootstrap, "topics", "create", topic, "--if-not-exists")[0]
    listed = json.loads(_ok(bootstrap, "topics", "list", "--json")[0])
    assert {"name": topic, "partitions": 2} in listed

    described = json.loads(_ok(bootstrap, "topics", "describe", topic, "--json")[0])
    assert described["config"]["retention_ms"] == 3_600_000
    assert described["config"]["partitions"] == 2
    assert [(p["partition"], p["log_start_offset"], p["log_end_offset"], p["size_bytes"])
            for p in described["partitions"]] == [(0, 0, 0, None), (1, 0, 0, None)]
    text = _ok(bootstrap, "topics", "describe", topic)[0]
    assert "PARTITION  START  END  RECORDS\n0" in text
    assert "retention_ms=3600000" in text and "local-only" in text

    _ok(bootstrap, "topics", "alter", topic, "-c", "retention_ms=5000")
    assert "retention_ms=5000" in _ok(bootstrap, "topics", "describe", topic)[0]

    assert "now has 3 partitions" in _ok(bootstrap, "topics", "add-partitions", topic,
                                         "--total", "3")[0]
    code, _, err = _run(bootstrap, "topics", "add-partitions", topic, "--total", "2")
    assert code == 1 and "can only be added" in err
    assert _ok(bootstrap, "topics", "delete", topic)[0] == f"deleted topic {topic!r}\n"
    assert topic not in [t["name"] for t in json.loads(_ok(bootstrap, "topics", "list",
                                                            "--json")[0])]


@pytest.mark.kafka
def test_produce_then_consume_keys_headers_offsets_and_times(bootstrap: str, topic: str) -> None:
    _ok(bootstrap, "topics", "create", topic)
    _, err = _ok(bootstrap, "produce", topic, "--key-separator", ":", "--header", "src=cli",
                 stdin="alice:book\nbob:pen\nalice:lamp\n")
    assert "wrote 3 record(s)" in err
    out, _ = _ok(bootstrap, "consume", topic, "--from-beginning", "--print-offset",
                 "--print-headers", "--print-key")
    assert out == ("Offset:0\tsrc:cli\talice\tbook\nOffset:1\tsrc:cli\tbob\tpen\n"
                   "Offset:2\tsrc:cli\talice\tlamp\n")
    out, _ = _ok(bootstrap, "consume", topic, "--partition", "0", "--offset", "1",
                 "--max-messages", "1", "--format", "json")
    row = json.loads(out)
    assert (row["offset"], row["key"], row["value"], row["headers"]) == (1, "bob", "pen",
                                                                         {"src": "cli"})
    later = int(time.time() * 1000) + 3_600_000  # in an hour: after everything above
    _ok(bootstrap, "produce", topic, "--format", "json",
        stdin=json.dumps({"key": "k", "value": "later", "timestamp": later}) + "\n")
    assert _ok(bootstrap, "consume", topic, "--from-time", "now")[0] == "later\n"
    code, _, err = _run(bootstrap, "consume", topic, "--partition", "0", "--offset", "99")
    assert code == 1 and "outside partition" in err
    code, _, err = _run(bootstrap, "produce", topic, "--partition", "4", stdin="x\n")
    assert code == 1 and "has no partition 4" in err
    code, _, err = _run(bootstrap, "consume", topic + "-missing")
    assert code == 1 and len(err.splitlines()) == 1


@pytest.mark.kafka
def test_consume_with_group_then_lag_reset_offsets_and_delete(bootstrap: str, topic: str) -> None:
    group = _name("g")
    _ok(bootstrap, "topics", "create", topic)
    _ok(bootstrap, "produce", topic, stdin="".join(f"v{i}\n" for i in range(5)))
    out, _ = _ok(bootstrap, "consume", topic, "--group", group, "--from-beginning",
                 "--max-messages", "3")
    assert out == "v0\nv1\nv2\n"
    assert group in _ok(bootstrap, "groups", "list")[0]
    described = json.loads(_ok(bootstrap, "groups", "describe", group, "--json")[0])
    assert described["state"] == "Empty" and described["lag"] == 2
    assert [(p["partition"], p["committed"], p["log_end_offset"], p["lag"])
            for p in described["partitions"]] == [(0, 3, 5, 2)]
    text = _ok(bootstrap, "groups", "describe", group)[0]
    assert "total lag 2" in text and f"{topic}  0          3          5        2" in text

    out, _ = _ok(bootstrap, "groups", "reset-offsets", group, "--to-earliest")
    assert f"{topic}  0          3        0" in out and "dry run" in out
    assert json.loads(_ok(bootstrap, "groups", "describe", group, "--json")[0])["lag"] == 2
    _ok(bootstrap, "groups", "reset-offsets", group, "--shift-by", "-1", "--execute")
    assert json.loads(_ok(bootstrap, "groups", "describe", group, "--json")[0])["lag"] == 3
    assert _ok(bootstrap, "consume", topic, "--group", group)[0] == "v2\nv3\nv4\n"

    assert _ok(bootstrap, "groups", "delete", group)[0] == f"deleted group {group!r}\n"
    code, _, err = _run(bootstrap, "groups", "describe", group)
    assert code == 1 and "does not exist" in err


@pytest.mark.kafka
def test_replay_to_stdout_and_into_another_topic(bootstrap: str, topic: str) -> None:
    copy = topic + "-copy"
    _ok(bootstrap, "topics", "create", topic, "-p", "2")
    _ok(bootstrap, "topics", "create", copy)
    now = int(time.time() * 1000)
    lines = [json.dumps({"key": f"k{i}", "value": f"v{i}", "timestamp": now - 5000 + i * 10})
             for i in range(6)]
    _ok(bootstrap, "produce", topic, "--format", "json", stdin="\n".join(lines) + "\n")
    out, err = _ok(bootstrap, "replay", topic, "--from-time", "1m", "--max-speed")
    assert out == "".join(f"v{i}\n" for i in range(6))  # timestamp order across partitions
    assert "replayed 6 record(s)" in err
    out, _ = _ok(bootstrap, "replay", topic, "--from-time", str(now - 5000 + 20), "--to-time",
                 str(now - 5000 + 40), "--max-speed")
    assert out == "v2\nv3\n"
    _, err = _ok(bootstrap, "replay", topic, "--from-time", "1m", "--max-speed", "--to", copy,
                 "--keep-timestamps")
    assert f"to {copy!r}" in err
    out, _ = _ok(bootstrap, "consume", copy, "--from-beginning", "--format", "json")
    assert [(r["key"], r["value"], r["timestamp"]) for r in map(json.loads, out.splitlines())] \
        == [(f"k{i}", f"v{i}", now - 5000 + i * 10) for i in range(6)]


@pytest.mark.kafka
def test_bench_produce_and_consume(bootstrap: str, topic: str) -> None:
    out, _ = _ok(bootstrap, "bench", "produce", topic, "-n", "2000", "-p", "2", "--json")
    produced = json.loads(out)
    assert (produced["created"], produced["partitions"], produced["records"]) == (True, 2, 2000)
    consumed = json.loads(_ok(bootstrap, "bench", "consume", topic, "--json")[0])
    assert (consumed["partitions"], consumed["records"]) == (2, 2000)
    assert consumed["bytes"] == 2000 * 100


@pytest.mark.kafka
def test_dlq_list_and_redrive(bootstrap: str, topic: str) -> None:
    dead = topic + h.DLQ_SUFFIX
    _ok(bootstrap, "topics", "create", topic)
    _ok(bootstrap, "topics", "create", dead)
    letter = {"key": "k", "value": "boom", "headers": {
        h.DLQ_ORIGINAL_TOPIC: topic, h.DLQ_ORIGINAL_PARTITION: "0",
        h.DLQ_ORIGINAL_OFFSET: "7", h.DLQ_ATTEMPTS: "3", h.DLQ_ERROR_CLASS: "ValueError",
        h.DLQ_ERROR_MESSAGE: "bad", "trace": "t1"}}
    _ok(bootstrap, "produce", dead, "--format", "json", stdin=json.dumps(letter) + "\n")
    [listed] = json.loads(_ok(bootstrap, "dlq", "list", dead, "--json")[0])
    assert (listed["original"]["topic"], listed["attempts"], listed["redriven"]) == (topic, 3,
                                                                                      False)
    assert "re-drove 1 dead letter(s)" in _ok(bootstrap, "dlq", "redrive", dead, "--all",
                                              "--yes")[0]
    out, _ = _ok(bootstrap, "consume", topic, "--from-beginning", "--format", "json")
    assert [(r["key"], r["value"], r["headers"]) for r in map(json.loads, out.splitlines())] \
        == [("k", "boom", {"trace": "t1"})]
    assert json.loads(_ok(bootstrap, "dlq", "list", dead, "--json")[0])[0]["redriven"] is True
    assert "nothing to re-drive" in _ok(bootstrap, "dlq", "redrive", dead, "--all", "--yes")[0]
    # (the group logstore-redrive is left: other tests' dead-letter topics may use it too)


# ------------------------------------------------------------------------ no broker needed

LOCAL_ONLY_COMMANDS = [
    ("inspect", "t"), ("verify",), ("repair", "--yes"), ("compact", "t"),
    ("maintain", "--once"), ("serve",), ("users", "list"), ("share-groups", "list"),
    ("transactions", "abort-expired"), ("demo",),
]


def test_every_command_either_takes_a_cluster_or_says_why_not() -> None:
    assert set(cli.commands) <= CLUSTER_COMMANDS | set(LOCAL_ONLY)
    assert {args[0] for args in LOCAL_ONLY_COMMANDS} == set(LOCAL_ONLY)


@pytest.mark.parametrize("args", LOCAL_ONLY_COMMANDS, ids=lambda a: a[0])
def test_local_only_commands_refuse_a_cluster_in_one_line(args: tuple[str, ...]) -> None:
    # nothing is connected to: the refusal comes first (no broker listens on port 9)
    code, out, err = _run("127.0.0.1:9", *args)
    assert code == 1 and out == ""
    command = " ".join(a for a in args if not a.startswith("-") and a != "t")
    assert err == f"Error: logstore {command} {LOCAL_ONLY[args[0]]}: drop --bootstrap-server\n"
    assert "local-only" in err


def test_local_only_refusal_names_the_environment_variable_and_help_still_works() -> None:
    result = _invoke(["verify"], env={"LOGSTORE_BOOTSTRAP_SERVERS": "127.0.0.1:9",
                                      "LOGSTORE_DATA_DIR": None})
    assert result.exit_code == 1
    assert result.stderr.endswith(": unset LOGSTORE_BOOTSTRAP_SERVERS\n")
    code, out, _ = _run("127.0.0.1:9", "verify", "--help")
    assert code == 0 and "Usage: logstore verify" in out


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--data-dir", "d", "--bootstrap-server", "h:1"], {},
     "--data-dir and --bootstrap-server both name a store"),
    ([], {"LOGSTORE_DATA_DIR": "d", "LOGSTORE_BOOTSTRAP_SERVERS": "h:1"},
     "LOGSTORE_DATA_DIR and LOGSTORE_BOOTSTRAP_SERVERS both name a store"),
    (["-X", "acks=all"], {}, "--kafka-config needs --bootstrap-server"),
    (["--bootstrap-server", "h:1", "--init"], {}, "--init is about a data directory"),
    (["--bootstrap-server", "nohost"], {}, "is not host:port"),
    (["--bootstrap-server", "h:1", "-X", "acks"], {}, "'acks' is not NAME=VALUE"),
    (["--data-dir", "kafka://h:1"], {}, "use --bootstrap-server kafka://h:1"),
])
def test_target_options_that_do_not_add_up(
    args: list[str], env: dict[str, str], message: str
) -> None:
    clean: dict[str, str | None] = {"LOGSTORE_DATA_DIR": None,
                                    "LOGSTORE_BOOTSTRAP_SERVERS": None, **env}
    result = _invoke([*args, "topics", "list"], env=clean)
    assert result.exit_code == 1, result.output
    assert message in result.stderr and len(result.stderr.splitlines()) == 1


def test_an_option_on_the_command_line_wins_over_the_other_variable(tmp_path: Path) -> None:
    data = tmp_path / "d"
    result = _invoke(["--data-dir", str(data), "topics", "create", "t"],
                     env={"LOGSTORE_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
    assert result.exit_code == 0, result.output
    with logstore.open(data) as store:
        assert store.list_topics() == ["t"]


def test_an_unreachable_cluster_is_one_line_on_stderr() -> None:
    # a real process: librdkafka's own log lines would go to the process's stderr
    done = subprocess.run(
        [sys.executable, "-m", "logstore_cli.main", "--bootstrap-server", "127.0.0.1:9",
         "-X", "logstore.request.timeout.ms=800", "topics", "list"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("Error: listing topics: ")
    assert "check --bootstrap-server" in done.stderr and len(done.stderr.splitlines()) == 1
