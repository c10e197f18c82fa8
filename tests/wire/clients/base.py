"""The one interface a wire test drives every Kafka client library through.

A test body is written once against :class:`WireClient`; each library implements what it
can (``capabilities``), converting its own objects to :mod:`tests.wire.model`'s. Every
call takes the bootstrap address and makes and closes its own client objects, so a test
leaves no connection behind.

Settings common to all libraries keep the suite fast on a small machine: group session
timeouts of 6 s (the brokers' minimum), heartbeats every 300 ms, fetch waits of 100 ms.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

from tests.wire.model import Got, GroupInfo, MemberControl, OffsetTime, PartitionInfo, Rec

SESSION_TIMEOUT_MS = 6000
HEARTBEAT_MS = 300
MAX_POLL_INTERVAL_MS = 10_000
"""The rebalance timeout of the clients that send it (a join waits at most this long)."""
FETCH_WAIT_MS = 100
POLL_S = 0.1
MAX_POLL_RECORDS = 5
"""Records one poll hands over: a member with a ``limit`` stops in the middle of a
partition, leaving fetched records uncommitted."""
CALL_TIMEOUT_S = 20.0


class Can(enum.Enum):
    PRODUCE = "produce"
    PRODUCE_DETAILS = "produce records with their own headers, timestamps and partitions"
    CONSUME = "consume"
    GROUP = "consume in a group"
    TIMES = "offsets for times"
    METADATA = "describe a topic"
    ADMIN = "create, configure and delete topics"
    GROUP_ADMIN = "list and describe groups, read committed offsets"


class WireClient:
    """One client library. Methods raise NotImplementedError for what it cannot do."""

    name: str = ""
    capabilities: frozenset[Can] = frozenset()
    default_idempotent: bool = False
    """Whether the library's producer is idempotent with its default settings."""
    null_header_values: bool = False
    """Whether the library sends a header without a value (kafka-python refuses one)."""

    def can(self, *what: Can) -> bool:
        return all(w in self.capabilities for w in what)

    def unavailable(self) -> str | None:
        """None when the library can run here, else why not."""
        return None

    # -- records ------------------------------------------------------------------------

    def produce(
        self,
        bootstrap: str,
        topic: str,
        records: Sequence[Rec],
        *,
        compression: str | None = None,
        idempotent: bool | None = None,
    ) -> list[tuple[int, int]] | None:
        """Send ``records`` and wait for every acknowledgement; returns each record's
        (partition, offset), or None when the client does not report them.
        ``idempotent`` None: the library's default."""
        raise NotImplementedError

    def consume(
        self, bootstrap: str, topic: str, partitions: int, count: int
    ) -> list[Got]:
        """Read every partition from the beginning, outside any group, until ``count``
        records came (and briefly after, so that duplicates would show)."""
        raise NotImplementedError

    def run_member(self, bootstrap: str, topic: str, group: str, ctl: MemberControl) -> None:
        """Be a member of ``group`` subscribed to ``topic`` (in the calling thread) until
        ``ctl`` says stop or its limit is reached: report the assignment and records to
        ``ctl``, commit the offsets after each handed-over poll, then leave the group."""
        raise NotImplementedError

    def offsets_for_times(
        self, bootstrap: str, topic: str, query: Mapping[int, int]
    ) -> dict[int, OffsetTime | None]:
        """ListOffsets by timestamp for ``{partition: timestamp}``."""
        raise NotImplementedError

    def read_at_time(self, bootstrap: str, topic: str, partition: int, timestamp: int) -> Got:
        """Seek ``partition`` to ``timestamp`` and read the first record there."""
        raise NotImplementedError

    # -- topics -------------------------------------------------------------------------

    def create_topic(
        self, bootstrap: str, name: str, partitions: int, configs: Mapping[str, str]
    ) -> str | None:
        """Create a topic (replication factor 1); None, or Kafka's error name."""
        raise NotImplementedError

    def describe_topic(self, bootstrap: str, name: str) -> list[PartitionInfo]:
        raise NotImplementedError

    def topic_configs(self, bootstrap: str, name: str) -> dict[str, tuple[str, str]]:
        """``{name: (value, source)}`` (source: Kafka's ConfigSource name, e.g.
        ``DYNAMIC_TOPIC_CONFIG``)."""
        raise NotImplementedError

    def delete_topic(self, bootstrap: str, name: str) -> str | None:
        """None, or Kafka's error name."""
        raise NotImplementedError

    def list_topics(self, bootstrap: str) -> set[str]:
        raise NotImplementedError

    # -- groups -------------------------------------------------------------------------

    def list_groups(self, bootstrap: str) -> dict[str, str | None]:
        """``{group: state}`` (state None when the client reports none)."""
        raise NotImplementedError

    def describe_group(self, bootstrap: str, group: str, topic: str) -> GroupInfo:
        raise NotImplementedError

    def committed(
        self, bootstrap: str, group: str, topic: str, partitions: int
    ) -> dict[int, int]:
        """The group's committed offsets of ``topic`` (partitions without one left out)."""
        raise NotImplementedError


_ALIASES = {
    "MessageSizeTooLargeError": "MESSAGE_TOO_LARGE",  # kafka-python, aiokafka
    "MSG_SIZE_TOO_LARGE": "MESSAGE_TOO_LARGE",  # librdkafka
    "UNKNOWN_TOPIC_OR_PART": "UNKNOWN_TOPIC_OR_PARTITION",  # librdkafka
    "GroupIdNotFoundError": "GROUP_ID_NOT_FOUND",
    "NotCoordinatorError": "NOT_COORDINATOR",
    "CoordinatorLoadInProgressError": "COORDINATOR_LOAD_IN_PROGRESS",
    "CoordinatorNotAvailableError": "COORDINATOR_NOT_AVAILABLE",
}
TRANSIENT_GROUP_ERRORS = frozenset({
    "NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE"})
"""What a broker answers about a group while its coordinator loads (after a restart):
clients retry them."""


def error_name(exc: BaseException) -> str:
    """Kafka's error name for a library's exception (``TopicAlreadyExistsError``,
    librdkafka's ``TOPIC_ALREADY_EXISTS`` and an aiokafka error code all give
    ``TOPIC_ALREADY_EXISTS``)."""
    text = f"{type(exc).__name__}: {exc}"
    for alias, known in _ALIASES.items():
        if alias in text:
            return known
    for known in ("TOPIC_ALREADY_EXISTS", "UNKNOWN_TOPIC_OR_PARTITION"):
        camel = "".join(w.capitalize() for w in known.split("_"))
        if known in text or camel in text:
            return known
    return text
