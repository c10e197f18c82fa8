"""kcat (librdkafka's command line client) through subprocesses with timeouts.

What kcat can do: produce lines (``-K`` key delimiter, ``-H`` headers for every record,
``-z`` codec; no per-record timestamps or partitions, and it reports no offsets), consume
(``-C -o beginning -e -J``), be a group member (``-G``: offsets are auto-committed, and
committed once more when it closes on SIGTERM or after ``-c`` records), describe
metadata (``-L -J``) and query offsets for times (``-Q``). Records must be text here
(``-J`` prints keys and values as strings).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tests.wire.clients.base import (
    CALL_TIMEOUT_S,
    FETCH_WAIT_MS,
    HEARTBEAT_MS,
    MAX_POLL_INTERVAL_MS,
    SESSION_TIMEOUT_MS,
    Can,
    WireClient,
)
from tests.wire.model import Got, MemberControl, OffsetTime, PartitionInfo, Rec

KEY_DELIMITER = ":"
_ASSIGNED = re.compile(r"rebalanced \(memberid [^)]*\): assigned: (.*)$")
_PARTITION = re.compile(r"\[(\d+)\]")
_QUERY = re.compile(r"^(\S+) \[(\d+)\] offset (-?\d+)$")


def _run(args: list[str], stdin: bytes | None = None) -> str:
    done = subprocess.run(["kcat", *args], input=stdin, capture_output=True,
                          timeout=CALL_TIMEOUT_S, check=False)
    err = done.stderr.decode(errors="replace")
    if done.returncode != 0 or "ERROR" in err or "failed" in err.lower():
        raise AssertionError(f"kcat {' '.join(args)} exited {done.returncode}: {err.strip()}")
    return done.stdout.decode()


def _got(line: str) -> Got:
    m = json.loads(line)
    raw = m.get("headers") or []
    headers = tuple((raw[i], raw[i + 1].encode()) for i in range(0, len(raw), 2))
    key = None if m["key"] is None else m["key"].encode()
    value = None if m["payload"] is None else m["payload"].encode()
    return Got(m["partition"], m["offset"], key, value, headers, m["ts"])


def _settings(**extra: Any) -> list[str]:
    out: list[str] = []
    for name, value in {"client.id": "wire-kcat", "fetch.wait.max.ms": FETCH_WAIT_MS,
                        **extra}.items():
        out += ["-X", f"{name.replace('_', '.')}={value}"]
    return out


def _read_records(proc: subprocess.Popen[str], ctl: MemberControl) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip():
            ctl.add([_got(line)])


def _read_events(proc: subprocess.Popen[str], ctl: MemberControl, errors: list[str]) -> None:
    """kcat's stderr: rebalances (``assigned: t [0], t [1]``, ``revoked: ...``), errors."""
    assert proc.stderr is not None
    for line in proc.stderr:
        found = _ASSIGNED.search(line)
        if found:
            ctl.assigned = frozenset(int(p) for p in _PARTITION.findall(found[1]))
        elif "revoked:" in line:
            ctl.assigned = frozenset()
        elif "ERROR" in line or "FAIL" in line:
            errors.append(line.strip())


class KcatClient(WireClient):
    name = "kcat"
    capabilities = frozenset({Can.PRODUCE, Can.CONSUME, Can.GROUP, Can.TIMES, Can.METADATA})
    default_idempotent = False

    def unavailable(self) -> str | None:
        return None if shutil.which("kcat") else "kcat is not on PATH (apt-get install kcat)"

    def produce(
        self,
        bootstrap: str,
        topic: str,
        records: Sequence[Rec],
        *,
        compression: str | None = None,
        idempotent: bool | None = None,
    ) -> None:
        headers = {r.headers for r in records}
        if len(headers) > 1 or any(r.timestamp is not None or r.partition is not None
                                   or r.key is None or r.value is None for r in records):
            raise NotImplementedError("kcat sends keyed text lines with the same headers")
        lines = b"".join(r.key + KEY_DELIMITER.encode() + r.value + b"\n"  # type: ignore[operator]
                         for r in records)
        args = ["-b", bootstrap, "-P", "-t", topic, "-K", KEY_DELIMITER]
        for k, v in headers.pop():
            args += ["-H", f"{k}={v.decode()}"]
        if compression is not None:
            args += ["-z", compression]
        if idempotent is not None:
            args += ["-X", f"enable.idempotence={str(idempotent).lower()}"]
        _run(args, stdin=lines)

    def consume(self, bootstrap: str, topic: str, partitions: int, count: int) -> list[Got]:
        out = _run(["-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-J", "-q",
                    *_settings()])
        return [_got(line) for line in out.splitlines() if line.strip()]

    def run_member(self, bootstrap: str, topic: str, group: str, ctl: MemberControl) -> None:
        args = ["kcat", "-b", bootstrap, "-G", group, topic, "-J", "-u",
                *_settings(auto_offset_reset="earliest", session_timeout_ms=SESSION_TIMEOUT_MS,
                           heartbeat_interval_ms=HEARTBEAT_MS,
                           max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
                           auto_commit_interval_ms=200)]
        if ctl.limit is not None:
            args += ["-c", str(ctl.limit)]
        errors: list[str] = []
        with subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) as proc:
            readers = [
                threading.Thread(target=_read_records, args=(proc, ctl), daemon=True),
                threading.Thread(target=_read_events, args=(proc, ctl, errors), daemon=True),
            ]
            for reader in readers:
                reader.start()
            try:
                while proc.poll() is None:
                    if ctl.stop.is_set():
                        proc.send_signal(signal.SIGTERM)  # kcat closes: commits and leaves
                        proc.wait(timeout=CALL_TIMEOUT_S)
                        break
                    time.sleep(0.05)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                for reader in readers:
                    reader.join(timeout=5)
        if proc.returncode not in (0, -signal.SIGTERM) or errors:
            raise AssertionError(f"kcat -G exited {proc.returncode}: {errors}")

    def offsets_for_times(
        self, bootstrap: str, topic: str, query: Mapping[int, int]
    ) -> dict[int, OffsetTime | None]:
        args = ["-b", bootstrap, "-Q"]
        for p, ts in query.items():
            args += ["-t", f"{topic}:{p}:{ts}"]
        out: dict[int, OffsetTime | None] = {}
        for line in _run(args).splitlines():
            found = _QUERY.match(line.strip())
            if found:
                offset = int(found[3])
                out[int(found[2])] = None if offset < 0 else OffsetTime(offset, None)
        return out

    def read_at_time(self, bootstrap: str, topic: str, partition: int, timestamp: int) -> Got:
        out = _run(["-b", bootstrap, "-C", "-t", topic, "-p", str(partition), "-o",
                    f"s@{timestamp}", "-c", "1", "-e", "-J", "-q", *_settings()])
        (line,) = [x for x in out.splitlines() if x.strip()]
        return _got(line)

    def describe_topic(self, bootstrap: str, name: str) -> list[PartitionInfo]:
        meta: dict[str, Any] = json.loads(_run(["-b", bootstrap, "-L", "-t", name, "-J"]))
        (topic,) = meta["topics"]
        assert "error" not in topic, topic
        return sorted(
            PartitionInfo(p["partition"], p["leader"], tuple(r["id"] for r in p["replicas"]),
                          tuple(r["id"] for r in p["isrs"]))
            for p in topic["partitions"]
        )

    def list_topics(self, bootstrap: str) -> set[str]:
        meta: dict[str, Any] = json.loads(_run(["-b", bootstrap, "-L", "-J"]))
        return {t["topic"] for t in meta["topics"]}
