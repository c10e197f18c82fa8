"""What the wire tests send and what they compare: records, topics and groups in one shape
for every client library (each library's helper converts its own objects to these).

No I/O happens here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

Headers = tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True)
class Rec:
    """A record to produce (``timestamp`` None: the client's clock; ``partition`` None:
    the client's partitioner)."""

    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp: int | None = None
    partition: int | None = None


@dataclass(frozen=True, order=True)
class Got:
    """A record as a consumer received it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp: int
    leader_epoch: int = -1
    """The partition leader epoch of the record's batch, where the client tells it."""

    @property
    def content(self) -> tuple[bytes | None, bytes | None, Headers]:
        return (self.key, self.value, self.headers)


@dataclass(frozen=True, order=True)
class PartitionInfo:
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@dataclass(frozen=True)
class MemberInfo:
    """A group member as DescribeGroups reports it (``assignment``: its partitions of
    ``topic``, decoded from the consumer protocol)."""

    member_id: str
    client_id: str
    client_host: str
    assignment: frozenset[int]


@dataclass(frozen=True)
class GroupInfo:
    state: str
    protocol_type: str
    protocol: str
    members: tuple[MemberInfo, ...]
    authorized_operations: frozenset[str] | None = None
    """Kafka's ACL operation names, when the client asked for them and got them."""
    error: str | None = None
    """Kafka's error name, when the group's answer carried one."""

    def assignments(self) -> list[frozenset[int]]:
        return sorted((m.assignment for m in self.members), key=sorted)


@dataclass(frozen=True)
class OffsetTime:
    """One ListOffsets-by-timestamp answer (None from a client: no record that late)."""

    offset: int
    timestamp: int | None
    """None when the client does not return the timestamp (kcat -Q)."""


@dataclass
class MemberControl:
    """How a test drives one group member running in its own thread: the member reports
    what it consumed and its assignment; the test sets ``stop``. ``limit``: the member
    hands over (and commits) at most this many records, then leaves by itself."""

    limit: int | None = None
    records: list[Got] = field(default_factory=list)
    assigned: frozenset[int] = frozenset()
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, records: Iterable[Got]) -> list[Got]:
        """Take ``records`` (up to ``limit`` in all); returns those taken, to commit."""
        with self.lock:
            taken = list(records)
            if self.limit is not None:
                taken = taken[: max(0, self.limit - len(self.records))]
            self.records.extend(taken)
            return taken

    def full(self) -> bool:
        with self.lock:
            return self.limit is not None and len(self.records) >= self.limit

    def count(self) -> int:
        with self.lock:
            return len(self.records)

    def running(self) -> bool:
        return not self.stop.is_set() and not self.full()


ACL_OPERATIONS = {
    3: "READ", 4: "WRITE", 5: "CREATE", 6: "DELETE", 7: "ALTER", 8: "DESCRIBE",
    9: "CLUSTER_ACTION", 10: "DESCRIBE_CONFIGS", 11: "ALTER_CONFIGS", 12: "IDEMPOTENT_WRITE",
    13: "CREATE_TOKENS", 14: "DESCRIBE_TOKENS", 15: "TWO_PHASE_COMMIT",
}
"""Kafka's AclOperation codes (the bits of DescribeGroups' AuthorizedOperations)."""


def acl_operations(bits: int) -> frozenset[str] | None:
    """The operation names of an AuthorizedOperations bit field (None: not given, which
    Kafka encodes as INT32_MIN)."""
    if bits == -(2**31):
        return None
    return frozenset(name for code, name in ACL_OPERATIONS.items() if bits & (1 << code))


def commit_points(records: Iterable[Got]) -> dict[int, int]:
    """The offset to commit per partition after ``records``: the last one + 1."""
    return {p: offset for p, (offset, _) in commit_epochs(records).items()}


def commit_epochs(records: Iterable[Got]) -> dict[int, tuple[int, int]]:
    """(offset to commit, leader epoch of the last record) per partition, as a Kafka
    consumer commits its position after ``records``."""
    out: dict[int, tuple[int, int]] = {}
    for r in records:
        if r.offset + 1 > out.get(r.partition, (0, -1))[0]:
            out[r.partition] = (r.offset + 1, r.leader_epoch)
    return out


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, every_s: float = 0.05) -> None:
    """Wait until ``check()``; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)
