"""Dead letters: reading them, remembering which were re-driven, and re-driving them (the
library under ``logstore dlq`` and the web console's dead-letter view).

Dead letters are the records :class:`~logstore.patterns.retry.RetryingConsumer` wrote to
a dead-letter topic, with the ``logstore.dlq.*`` headers of :mod:`logstore.headers`.

What was re-driven is kept as the committed offsets of the consumer group
:data:`REDRIVE_GROUP`, one per dead-letter partition: the committed offset is the first
offset not re-driven yet (every one below it was), and its commit metadata lists the
re-driven offsets above it (``"5,7-9"``), so re-driving chosen offsets out of order is
remembered too. Deleting that group forgets it. A re-drive commits after the producer
flushed the records, so a crash in between sends them again on the next re-drive
(at-least-once), never loses one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from logstore import headers as h
from logstore.client.admin import current_offsets
from logstore.client.backend import Backend
from logstore.client.producer import Producer
from logstore.client.reading import FETCH_BYTES, read_partition
from logstore.errors import (
    InvalidConfigError,
    LogstoreError,
    PartitionNotFoundError,
)
from logstore.patterns.retry_policy import own_headers
from logstore.types import ConsumerRecord, TopicPartition

REDRIVE_GROUP = "logstore-redrive"
MAX_STATE_CHARS = 4096  # Kafka's offset.metadata.max.bytes: the commit metadata's limit


class LetterNotFoundError(LogstoreError, LookupError):
    """No record at a ``PARTITION:OFFSET`` asked for (the message says what the
    partition holds)."""


class NotDeadLettersError(InvalidConfigError):
    """Records asked to be re-driven (or listed as dead letters) lack the
    ``logstore.dlq.original.topic`` header, so where they came from is unknown."""


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="backslashreplace")


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


class DeadLetter:
    """One record of a dead-letter topic and what its headers say."""

    def __init__(self, partition: int, record: ConsumerRecord) -> None:
        self.partition = partition
        self.record = record
        found = {k: v for k, v in record.headers}
        self.fields: dict[str, str | None] = {k: _text(found.get(k)) for k in h.DLQ_HEADERS}

    @property
    def is_dead_letter(self) -> bool:
        return self.fields[h.DLQ_ORIGINAL_TOPIC] is not None

    @property
    def where(self) -> str:
        """``PARTITION:OFFSET``, how a letter is named."""
        return f"{self.partition}:{self.record.offset}"

    @property
    def original_topic(self) -> str | None:
        return self.fields[h.DLQ_ORIGINAL_TOPIC]

    @property
    def original_partition(self) -> int | None:
        return _int(self.fields[h.DLQ_ORIGINAL_PARTITION])

    def summary(self) -> dict[str, object]:
        """What the headers say, as JSON-ready values."""
        f = self.fields
        return {
            "original": {"topic": f[h.DLQ_ORIGINAL_TOPIC],
                         "partition": _int(f[h.DLQ_ORIGINAL_PARTITION]),
                         "offset": _int(f[h.DLQ_ORIGINAL_OFFSET]),
                         "timestamp": _int(f[h.DLQ_ORIGINAL_TIMESTAMP])},
            "attempts": _int(f[h.DLQ_ATTEMPTS]),
            "error_class": f[h.DLQ_ERROR_CLASS], "error_message": f[h.DLQ_ERROR_MESSAGE],
        }


# ---------------------------------------------------------------------- reading


def letters_of(
    backend: Backend, topic: str, after: tuple[int, int] | None = None,
    until: Mapping[int, int] | None = None,
) -> Iterator[DeadLetter]:
    """The records of ``topic``, partition by partition, oldest first; from
    ``after = (partition, offset)`` on (that record included) when given; below
    ``until[partition]`` (an offset; a partition it leaves out is read to its end) when
    given. Reads a bounded fetch at a time: whatever the topic holds, this holds ~1 MiB.

    Raises:
        TopicNotFoundError: there is no such topic.
    """
    count = backend.topic_metadata(topic).partitions
    first_partition, first_offset = after if after is not None else (0, 0)
    for partition in range(max(0, first_partition), count):
        tp = TopicPartition(topic, partition)
        start, end = backend.offset_range(tp)
        if until is not None and partition in until:
            end = min(end, until[partition])
        offset = max(start, first_offset) if partition == first_partition else start
        for record in read_partition(backend, tp, offset, end):
            yield DeadLetter(partition, record)


def parse_where(text: str, topic: str, partitions: int) -> tuple[int, int]:
    """``PARTITION:OFFSET`` (or ``OFFSET`` in a topic of one partition) as a pair.

    Raises:
        InvalidConfigError: not that shape, or no such partition.
    """
    part, sep, off = text.rpartition(":")
    try:
        partition = int(part) if sep else 0
        offset = int(off)
    except ValueError:
        raise InvalidConfigError(f"{text!r} is not PARTITION:OFFSET (e.g. 0:12)") from None
    if not sep and partitions > 1:
        raise InvalidConfigError(
            f"{text!r} needs its partition: {topic!r} has {partitions} (use "
            f"PARTITION:OFFSET, e.g. 0:{offset})")
    if not 0 <= partition < partitions:
        raise PartitionNotFoundError(
            f"{topic!r} has no partition {partition} (it has 0..{partitions - 1})")
    return partition, offset


def find_letters(
    backend: Backend, topic: str, wheres: Sequence[tuple[int, int]]
) -> list[DeadLetter]:
    """The records at ``wheres`` (``(partition, offset)`` pairs, each once, in the order
    given), read one by one.

    Raises:
        LetterNotFoundError: no record at one of them (the message says what the
            partition holds).
    """
    out: list[DeadLetter] = []
    for partition, offset in dict.fromkeys(wheres):
        tp = TopicPartition(topic, partition)
        start, end = backend.offset_range(tp)
        record = None
        if start <= offset < end:
            answer = backend.fetch({tp: offset}, max_records=1, max_bytes=FETCH_BYTES)
            found = answer.get(tp, [])
            if not isinstance(found, Exception) and found and found[0].offset == offset:
                record = found[0]
        if record is None:
            span = f"offsets {start}..{end - 1}" if end > start else "no records"
            raise LetterNotFoundError(
                f"offset {offset} is out of range: partition {partition} of {topic!r} "
                f"holds {span}")
        out.append(DeadLetter(partition, record))
    return out


# ---------------------------------------------------------------------- re-drive state


def _parse_state(offset: int, metadata: str) -> set[int]:
    """The re-driven offsets at or above the committed ``offset``."""
    done: set[int] = set()
    for part in filter(None, metadata.split(",")):
        low, _, high = part.partition("-")
        try:
            done.update(range(int(low), int(high or low) + 1))
        except ValueError:
            continue  # not ours: ignore it
    return {o for o in done if o >= offset}


def _format_state(done: Iterable[int]) -> str:
    parts: list[str] = []
    for o in sorted(done):
        if parts and parts[-1].split("-")[-1] == str(o - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{o}"
        else:
            parts.append(str(o))
    return ",".join(parts)


@dataclass
class RedriveState:
    """Per partition of a dead-letter topic: the committed offset of
    :data:`REDRIVE_GROUP` and the re-driven offsets above it."""

    topic: str
    partitions: dict[int, tuple[int, set[int]]] = field(default_factory=dict)

    def is_redriven(self, letter: DeadLetter) -> bool:
        committed, above = self.partitions.get(letter.partition, (0, set()))
        return letter.record.offset < committed or letter.record.offset in above

    def redriven_count(self, partition: int, start: int, end: int) -> int:
        """How many offsets in ``[start, end)`` of ``partition`` were re-driven."""
        committed, above = self.partitions.get(partition, (0, set()))
        below = max(0, min(committed, end) - start)
        return below + sum(1 for o in above if max(start, committed) <= o < end)

    def after(
        self, chosen: Sequence[DeadLetter], starts: dict[int, int]
    ) -> dict[TopicPartition, tuple[int, str]]:
        """The commits that record ``chosen`` as re-driven too (``starts``: each
        partition's log start offset).

        Raises:
            InvalidConfigError: too many scattered offsets to fit the commit metadata.
        """
        out = {}
        for partition in sorted({x.partition for x in chosen}):
            committed, above = self.partitions.get(partition, (0, set()))
            above = above | {x.record.offset for x in chosen if x.partition == partition}
            committed = max(committed, starts[partition])
            while committed in above:
                committed += 1
            metadata = _format_state(o for o in above if o > committed)
            if len(metadata) > MAX_STATE_CHARS:
                raise InvalidConfigError(
                    f"too many scattered re-driven offsets in partition {partition} of "
                    f"{self.topic!r} to remember: re-drive the ones before them first "
                    f"(or all)")
            out[TopicPartition(self.topic, partition)] = (committed, metadata)
        return out


def redrive_state(backend: Backend, topic: str) -> RedriveState:
    """What was re-driven of ``topic`` so far."""
    state = RedriveState(topic)
    for tp, c in current_offsets(backend, REDRIVE_GROUP).items():
        if tp.topic == topic:
            state.partitions[tp.partition] = (c.offset, _parse_state(c.offset, c.metadata))
    return state


# ---------------------------------------------------------------------- re-drive


@dataclass
class RedrivePlan:
    """Where each chosen letter goes, before anything is sent."""

    topic: str
    routes: list[tuple[DeadLetter, str, int | None]]
    """Each letter, the topic it goes to and its partition (None: by its key)."""
    skipped: list[DeadLetter]
    """Letters asked for that were re-driven already (left out)."""
    state: RedriveState

    @property
    def letters(self) -> list[DeadLetter]:
        return [x for x, _, _ in self.routes]

    @property
    def counts(self) -> dict[str, int]:
        """How many letters go to each topic."""
        out: dict[str, int] = {}
        for _, name, _ in self.routes:
            out[name] = out.get(name, 0) + 1
        return dict(sorted(out.items()))


class _Router:
    """Where letters of ``topic`` go: their original topic and partition (the partition
    when it goes back to its original topic and that still has it, else by its key), or
    ``target``; checks each topic it names exists, once."""

    def __init__(self, backend: Backend, topic: str, target: str | None) -> None:
        self.backend = backend
        self.topic = topic
        self.target = target
        self._sizes: dict[str, int] = {}
        self._missing: list[str] = []
        self._missing_count = 0

    def route(self, x: DeadLetter) -> tuple[str, int | None] | None:
        """``(topic, partition or None)``, or None for a record that is no dead letter
        (without a target: :meth:`check` then refuses)."""
        if not x.is_dead_letter and self.target is None:
            self._missing_count += 1
            if len(self._missing) < 5:
                self._missing.append(x.where)
            return None
        name = self.target or x.original_topic or self.topic
        if name not in self._sizes:
            self._sizes[name] = self.backend.topic_metadata(name).partitions  # exists?
        original = x.original_partition
        keep = name == x.original_topic and original is not None and original < self._sizes[name]
        return name, original if keep else None

    def check(self) -> None:
        """Raises NotDeadLettersError if a record routed had no original topic."""
        if self._missing_count:
            shown = ", ".join(self._missing) + (" ..." if self._missing_count > 5 else "")
            raise NotDeadLettersError(
                f"{self._missing_count} record(s) of {self.topic!r} ({shown}) have no "
                f"{h.DLQ_ORIGINAL_TOPIC} header, so their original topic is unknown: they "
                f"are not dead letters (give a topic to send them to: --to TOPIC, or \"to\" "
                f"in the console's API)"
            )


def plan_redrive(
    backend: Backend, topic: str, chosen: Sequence[DeadLetter], target: str | None = None,
) -> RedrivePlan:
    """Plan re-driving the ``chosen`` letters of ``topic`` (those re-driven before are
    left out: :attr:`RedrivePlan.skipped`) to their original topics, or ``target``.

    Raises:
        NotDeadLettersError: a chosen record has no original topic and no ``target``.
        TopicNotFoundError: a topic to send to does not exist.
    """
    state = redrive_state(backend, topic)
    router = _Router(backend, topic, target)
    routes: list[tuple[DeadLetter, str, int | None]] = []
    for x in chosen:
        if not state.is_redriven(x):
            where = router.route(x)
            if where is not None:
                routes.append((x, *where))
    router.check()
    return RedrivePlan(topic, routes, [x for x in chosen if state.is_redriven(x)], state)


@dataclass
class RedriveAll:
    """What re-driving every pending letter of a topic does (or did)."""

    counts: dict[str, int]
    """How many letters go to each topic."""
    through: dict[int, int]
    """Per partition, the end offset the letters were taken below: a preview's, passed
    back to :func:`redrive_all`, makes it send exactly the letters the preview counted
    (not those dead-lettered since)."""

    @property
    def count(self) -> int:
        return sum(self.counts.values())


def preview_redrive_all(
    backend: Backend, topic: str, target: str | None = None,
    through: Mapping[int, int] | None = None,
) -> RedriveAll:
    """Count what re-driving every letter of ``topic`` not re-driven yet (below
    ``through``, else below each partition's end now) would send where, reading the
    topic a bounded fetch at a time (nothing is kept but the counts).

    Raises:
        NotDeadLettersError: a pending record has no original topic and no ``target``.
        TopicNotFoundError: a topic to send to does not exist.
    """
    state = redrive_state(backend, topic)
    partitions = backend.topic_metadata(topic).partitions
    ends = {p: backend.offset_range(TopicPartition(topic, p))[1] for p in range(partitions)}
    if through is not None:
        ends = {p: min(end, through.get(p, end)) for p, end in ends.items()}
    router = _Router(backend, topic, target)
    counts: dict[str, int] = {}
    for x in letters_of(backend, topic, until=ends):
        if not state.is_redriven(x):
            where = router.route(x)
            if where is not None:
                counts[where[0]] = counts.get(where[0], 0) + 1
    router.check()
    return RedriveAll(dict(sorted(counts.items())), ends)


def redrive_all(
    backend: Backend, topic: str, target: str | None = None,
    through: Mapping[int, int] | None = None, chunk: int = 500,
) -> RedriveAll:
    """Re-drive every letter of ``topic`` not re-driven yet (below ``through``, a
    preview's, else below each partition's end now), ``chunk`` letters at a time: each
    chunk is sent, then remembered, so memory stays bounded and a crash re-sends at most
    one chunk on the next run (never loses one). Checks every letter first
    (:func:`preview_redrive_all`): a refusal sends nothing.

    Raises:
        NotDeadLettersError, TopicNotFoundError: as :func:`preview_redrive_all`.
    """
    preview = preview_redrive_all(backend, topic, target, through)
    state = redrive_state(backend, topic)
    pending: list[DeadLetter] = []
    for x in letters_of(backend, topic, until=preview.through):
        if not state.is_redriven(x):
            pending.append(x)
        if len(pending) == chunk:
            execute_redrive(backend, plan_redrive(backend, topic, pending, target))
            pending = []
    if pending:
        execute_redrive(backend, plan_redrive(backend, topic, pending, target))
    return preview


def execute_redrive(backend: Backend, plan: RedrivePlan) -> None:
    """Send the plan's letters with their original key, value and headers (the
    dead-letter headers dropped), then remember them as re-driven.

    Raises:
        InvalidConfigError: too many scattered offsets to remember (nothing sent).
    """
    if not plan.routes:
        return
    starts = {p: backend.offset_range(TopicPartition(plan.topic, p))[0]
              for p in {x.partition for x in plan.letters}}
    commits = plan.state.after(plan.letters, starts)
    with Producer(backend) as producer:
        futures = [
            producer.send(name, x.record.value, x.record.key,
                          list(own_headers(x.record.headers)), partition=partition)
            for x, name, partition in plan.routes
        ]
        producer.flush()
        for future in futures:
            future.result()
    backend.commit_offsets(REDRIVE_GROUP, commits)
