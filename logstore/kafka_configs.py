"""Kafka's topic config names and values, to and from :class:`~logstore.config.TopicConfig`.

CreateTopics and DescribeConfigs speak Kafka's names (``retention.ms``); the store keeps
:class:`TopicConfig` fields (``retention_ms``). Settings logstore does not have but whose
Kafka value is what logstore does anyway (``compression.type=producer``,
``min.insync.replicas=1``) are accepted with that value and described read-only; any
other value of them, and any unknown name, is refused (Kafka's INVALID_CONFIG) rather
than silently ignored.

The wire server uses both directions (CreateTopics, DescribeConfigs); the Kafka-cluster
backend too, the other way round (:func:`to_kafka` for the topics it creates,
:func:`to_topic_config` for the settings a topic has). No I/O happens here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from logstore.config import TopicConfig
from logstore.errors import InvalidConfigError

LONG_MAX = 2**63 - 1

_INTS = {
    "segment.bytes": "segment_bytes",
    "segment.ms": "segment_ms",
    "retention.ms": "retention_ms",
    "retention.bytes": "retention_bytes",
    "max.message.bytes": "max_message_bytes",
    "index.interval.bytes": "index_interval_bytes",
    "segment.index.bytes": "segment_index_bytes",
    "min.compaction.lag.ms": "min_compaction_lag_ms",
    "max.compaction.lag.ms": "max_compaction_lag_ms",
    "delete.retention.ms": "delete_retention_ms",
}
DIRTY_RATIO = "min.cleanable.dirty.ratio"
FIXED = {
    "compression.type": "producer",
    "message.timestamp.type": "CreateTime",
    "min.insync.replicas": "1",
    "unclean.leader.election.enable": "false",
    "preallocate": "false",
}
"""Kafka settings whose only value here is Kafka's default."""
PARTITIONER = "logstore.partitioner"
"""logstore's own: how keys map to partitions for the embedded producer (murmur3 or
murmur2), part of the topic so every process agrees."""


class ConfigEntry(NamedTuple):
    name: str
    value: str
    read_only: bool
    is_default: bool


def to_topic_config(configs: Mapping[str, str | None]) -> dict[str, Any]:
    """TopicConfig fields for Kafka's ``configs`` (a None value means the default).

    Raises:
        InvalidConfigError: an unknown name, a value that is not a number where one is
            needed, or a value logstore cannot honour; the message names it.
    """
    out: dict[str, Any] = {}
    flush_messages = flush_ms = None
    for name, value in configs.items():
        if value is None:
            continue
        if name in _INTS:
            out[_INTS[name]] = _int(name, value)
        elif name == "cleanup.policy":
            out["cleanup_policy"] = value
        elif name == DIRTY_RATIO:
            try:
                out["min_cleanable_dirty_ratio"] = float(value)
            except ValueError:
                raise InvalidConfigError(
                    f"topic config {name}={value!r} is not a number"
                ) from None
        elif name == "flush.messages":
            flush_messages = _int(name, value)
        elif name == "flush.ms":
            flush_ms = _int(name, value)
        elif name == PARTITIONER:
            out["partitioner"] = value
        elif name in FIXED:
            if value != FIXED[name]:
                raise InvalidConfigError(
                    f"topic config {name}={value!r} is not supported (logstore supports "
                    f"{name}={FIXED[name]!r} only)"
                )
        else:
            raise InvalidConfigError(
                f"unknown topic config {name!r} (known: {', '.join(sorted(known_names()))})"
            )
    if flush_messages is not None or flush_ms is not None:
        out.update(_flush(flush_messages, flush_ms))
    TopicConfig().replace(**out)  # validate the values now: the message names the field
    return out


def _flush(messages: int | None, ms: int | None) -> dict[str, Any]:
    """Kafka's ``flush.messages``/``flush.ms`` as logstore's flush policy: fsync every
    append (``flush.messages=1``), every ``flush.ms``, or leave it to the OS."""
    if messages == 1:
        return {"flush": "always"}
    if messages not in (None, LONG_MAX):
        raise InvalidConfigError(
            f"topic config flush.messages={messages} is not supported (use 1 to fsync "
            f"every append, or flush.ms for a time interval)"
        )
    if ms is not None and ms != LONG_MAX:
        return {"flush": "interval", "flush_ms": ms}
    return {"flush": "never"}


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InvalidConfigError(f"topic config {name}={value!r} is not an integer") from None


def known_names() -> list[str]:
    return [*_INTS, "cleanup.policy", DIRTY_RATIO, "flush.messages", "flush.ms", PARTITIONER,
            *FIXED]


def describe(config: TopicConfig) -> list[ConfigEntry]:
    """Every setting of a topic by Kafka's name, as DescribeConfigs lists it."""
    default = TopicConfig()
    out = [
        ConfigEntry(kafka, str(getattr(config, field)), False,
                    getattr(config, field) == getattr(default, field))
        for kafka, field in _INTS.items()
    ]
    out.append(ConfigEntry("cleanup.policy", config.cleanup_policy, False,
                           config.cleanup_policy == default.cleanup_policy))
    out.append(ConfigEntry(DIRTY_RATIO, str(config.min_cleanable_dirty_ratio), False,
                           config.min_cleanable_dirty_ratio == default.min_cleanable_dirty_ratio))
    is_default = config.flush == default.flush and config.flush_ms == default.flush_ms
    messages = "1" if config.flush == "always" else str(LONG_MAX)
    ms = str(config.flush_ms) if config.flush == "interval" else str(LONG_MAX)
    out.append(ConfigEntry("flush.messages", messages, False, is_default))
    out.append(ConfigEntry("flush.ms", ms, False, is_default))
    out.append(ConfigEntry(PARTITIONER, config.partitioner, False,
                           config.partitioner == default.partitioner))
    out += [ConfigEntry(name, value, True, True) for name, value in FIXED.items()]
    return out


def to_kafka(fields: Mapping[str, Any]) -> dict[str, str]:
    """Kafka's names and values for :class:`TopicConfig` ``fields`` (the inverse of
    :func:`to_topic_config`), for creating a topic on a Kafka cluster. ``partitioner``
    is left out: Kafka has no such topic setting (the caller decides).

    Raises:
        InvalidConfigError: an unknown field or a bad value (the message names it).
    """
    config = TopicConfig().replace(**fields)  # validates: the message names the field
    names = {field: kafka for kafka, field in _INTS.items()}
    out: dict[str, str] = {}
    for field in fields:
        if field in names:
            out[names[field]] = str(getattr(config, field))
        elif field == "cleanup_policy":
            out["cleanup.policy"] = config.cleanup_policy
        elif field == "min_cleanable_dirty_ratio":
            out[DIRTY_RATIO] = str(config.min_cleanable_dirty_ratio)
        elif field in ("flush", "flush_ms"):
            messages = "1" if config.flush == "always" else str(LONG_MAX)
            ms = str(config.flush_ms) if config.flush == "interval" else str(LONG_MAX)
            out.update({"flush.messages": messages, "flush.ms": ms})
        elif field not in ("partitioner", "partitions"):
            raise InvalidConfigError(
                f"topic config {field!r} has no Kafka name (it cannot be set on a Kafka "
                f"cluster)"
            )
    return out
