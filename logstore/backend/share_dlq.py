"""Dead letters of share groups: an archived record appended to its dead-letter topic
with the ``logstore.dlq.*`` headers (:mod:`logstore.headers`), by
:class:`~logstore.backend.share.ShareCoordinator` before the state that archives it (a
crash in between writes it again, never loses it)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from logstore.errors import LogstoreError
from logstore.groups.share_state import Archived, ShareSettings
from logstore.headers import (
    DLQ_ATTEMPTS,
    DLQ_ERROR_CLASS,
    DLQ_ERROR_MESSAGE,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TIMESTAMP,
    DLQ_ORIGINAL_TOPIC,
    dead_letter_topic,
)
from logstore.storage.log import PartitionLog
from logstore.store import Store
from logstore.types import ConsumerRecord, TopicPartition

log = logging.getLogger("logstore.backend.share")

ReadOne = Callable[[PartitionLog, TopicPartition, int], "ConsumerRecord | None"]
"""Reads the record at an offset of a partition (None: the log no longer holds it)."""


def write_dead_letters(
    store: Store,
    group: str,
    settings: ShareSettings,
    dead: Sequence[tuple[TopicPartition, Archived]],
    now: int,
    on_append: Callable[[TopicPartition], None] | None,
    read_one: ReadOne,
) -> None:
    """Append each archived record of ``dead`` to its dead-letter topic (created, with
    the source's partitions and message size limit, if missing). One that cannot be
    written is logged (ERROR), not raised: the group's every change would fail on it for
    good; the record stays archived, and in its source log at its offset."""
    for tp, archived in dead:
        plog = store.topic(tp.topic).partition(tp.partition)
        found = read_one(plog, tp, archived.offset)
        if found is None:
            continue  # the log no longer holds it
        target = settings.dead_letter_topic or dead_letter_topic(tp.topic)
        source = store.topic(tp.topic).config
        try:
            if not store.has_topic(target):
                store.create_topic(
                    target, source.partitions, exist_ok=True,
                    max_message_bytes=source.max_message_bytes,
                )
            partition = _append(store, group, target, tp, archived, found, now)
        except LogstoreError as err:
            log.error(
                "share group %r: cannot dead-letter %s-%d offset %d to %r (%s): it is "
                "archived without a dead letter; it is still in %s-%d at that offset",
                group, tp.topic, tp.partition, archived.offset, target, err, tp.topic,
                tp.partition,
            )
            continue
        if on_append is not None:
            on_append(TopicPartition(target, partition))


def _append(
    store: Store, group: str, target: str, tp: TopicPartition, archived: Archived,
    found: ConsumerRecord, now: int,
) -> int:
    """Append one dead letter (the topic exists); returns its partition."""
    topic = store.topic(target)
    partition = tp.partition % topic.config.partitions
    headers = [*found.headers, *(
        (name, value.encode()) for name, value in (
            (DLQ_ORIGINAL_TOPIC, tp.topic),
            (DLQ_ORIGINAL_PARTITION, str(tp.partition)),
            (DLQ_ORIGINAL_OFFSET, str(archived.offset)),
            (DLQ_ORIGINAL_TIMESTAMP, str(found.timestamp)),
            (DLQ_ERROR_CLASS, archived.error_class),
            (DLQ_ERROR_MESSAGE, archived.error_message),
            (DLQ_ATTEMPTS, str(archived.delivery_count)),
        )
    )]
    topic.partition(partition).append_records([(now, found.key, found.value, headers)])
    log.info("share group %r: %s-%d offset %d dead-lettered to %s-%d after %d deliveries",
             group, tp.topic, tp.partition, archived.offset, target, partition,
             archived.delivery_count)
    return partition
