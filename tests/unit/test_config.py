"""Topic configuration: defaults, validation, replace and (de)serialisation
(logstore.config; kafka.md §1.6, §2.2, §3.1)."""

from __future__ import annotations

import dataclasses

import pytest

from logstore.config import TopicConfig
from logstore.errors import InvalidConfigError, LogstoreError

INT_FIELDS = [
    "partitions",
    "segment_bytes",
    "segment_ms",
    "retention_ms",
    "retention_bytes",
    "flush_ms",
    "max_message_bytes",
    "index_interval_bytes",
    "segment_index_bytes",
]
STR_FIELDS = ["flush", "cleanup_policy", "partitioner"]


def test_topic_config_defaults_follow_kafka_where_documented() -> None:
    cfg = TopicConfig()
    assert cfg.partitions == 1
    assert cfg.segment_bytes == 1_073_741_824  # segment.bytes = 1 GiB
    assert cfg.segment_ms == 604_800_000  # segment.ms = 7 days
    assert cfg.max_message_bytes == 1_048_588  # max.message.bytes = 1 MiB + 12
    assert cfg.index_interval_bytes == 4096  # index.interval.bytes
    assert cfg.segment_index_bytes == 10 * 1024 * 1024  # segment.index.bytes
    assert cfg.cleanup_policy == "delete"
    # logstore's own choices (config.py says why)
    assert cfg.retention_ms == -1
    assert cfg.retention_bytes == -1
    assert cfg.flush == "always"
    assert cfg.flush_ms == 1000
    assert cfg.partitioner == "murmur3"


def test_topic_config_max_index_entries_derive_from_segment_index_bytes() -> None:
    cfg = TopicConfig(segment_index_bytes=100)
    assert cfg.max_index_entries == 12  # 8-byte entries
    assert cfg.max_time_index_entries == 8  # 12-byte entries
    assert TopicConfig().max_index_entries == 1_310_720
    assert TopicConfig().max_time_index_entries == 873_813


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("partitions", 0),
        ("partitions", -1),
        ("partitions", 100_001),
        ("segment_bytes", 13),
        ("segment_bytes", 2**31),
        ("segment_ms", 0),
        ("segment_ms", -1),
        ("segment_ms", 2**63),
        ("retention_ms", -2),
        ("retention_bytes", -2),
        ("flush_ms", -1),
        ("max_message_bytes", 60),
        ("max_message_bytes", 2**31),
        ("index_interval_bytes", -1),
        ("index_interval_bytes", 2**31),
        ("segment_index_bytes", 11),
        ("segment_index_bytes", 2**31),
        ("flush", "sometimes"),
        ("flush", "ALWAYS"),
        ("flush", ""),
        ("cleanup_policy", "compacted"),
        ("cleanup_policy", "delete,compact,delete"),
        ("cleanup_policy", ""),
        ("min_cleanable_dirty_ratio", 1.5),
        ("min_cleanable_dirty_ratio", -0.1),
        ("min_cleanable_dirty_ratio", float("nan")),
        ("min_compaction_lag_ms", -1),
        ("max_compaction_lag_ms", 0),
        ("delete_retention_ms", -1),
        ("partitioner", "crc32"),
        ("partitioner", "random"),
    ],
)
def test_topic_config_raises_invalid_config_naming_field_and_value_when_out_of_range(
    field: str, value: object
) -> None:
    with pytest.raises(InvalidConfigError) as info:
        TopicConfig(**{field: value})  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, LogstoreError)
    message = str(info.value)
    assert field in message
    assert str(value) in message or repr(value) in message


@pytest.mark.parametrize(
    ("given", "stored"),
    [("compact", "compact"), ("delete", "delete"), ("compact,delete", "compact,delete"),
     ("delete,compact", "compact,delete"), ("delete, compact", "compact,delete")],
)
def test_cleanup_policy_takes_kafkas_values_and_stores_one_spelling(
    given: str, stored: str
) -> None:
    config = TopicConfig(cleanup_policy=given)
    assert config.cleanup_policy == stored
    assert config.compact == ("compact" in given)
    assert config.delete == ("delete" in given)
    assert TopicConfig.from_dict(config.to_dict()) == config


def test_dirty_ratio_takes_a_float_or_an_int_and_refuses_other_types() -> None:
    assert TopicConfig(min_cleanable_dirty_ratio=1).min_cleanable_dirty_ratio == 1.0
    assert TopicConfig(min_cleanable_dirty_ratio=0.25).min_cleanable_dirty_ratio == 0.25
    for bad in ("0.5", None, True):
        with pytest.raises(InvalidConfigError, match="min_cleanable_dirty_ratio"):
            TopicConfig(min_cleanable_dirty_ratio=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", INT_FIELDS)
@pytest.mark.parametrize("value", [True, False, 1.0, "1", None, 10**3 + 0j], ids=repr)
def test_topic_config_raises_invalid_config_when_int_field_gets_other_type(
    field: str, value: object
) -> None:
    with pytest.raises(InvalidConfigError, match=field) as info:
        TopicConfig(**{field: value})  # type: ignore[arg-type]
    assert repr(value) in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("field", STR_FIELDS)
@pytest.mark.parametrize("value", [1, None, b"delete", True], ids=repr)
def test_topic_config_raises_invalid_config_when_str_field_gets_other_type(
    field: str, value: object
) -> None:
    with pytest.raises(InvalidConfigError, match=field) as info:
        TopicConfig(**{field: value})  # type: ignore[arg-type]
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("partitions", 1),
        ("partitions", 100_000),
        ("segment_bytes", 14),
        ("segment_bytes", 2**31 - 1),
        ("segment_ms", 1),
        ("retention_ms", -1),
        ("retention_ms", 0),
        ("retention_bytes", -1),
        ("retention_bytes", 0),
        ("flush_ms", 0),
        ("max_message_bytes", 61),
        ("index_interval_bytes", 0),
        ("segment_index_bytes", 12),
        ("flush", "interval"),
        ("flush", "never"),
        ("partitioner", "murmur2"),
    ],
)
def test_topic_config_accepts_boundary_values(field: str, value: object) -> None:
    assert getattr(TopicConfig(**{field: value}), field) == value  # type: ignore[arg-type]


def test_topic_config_is_frozen() -> None:
    cfg = TopicConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.partitions = 3  # type: ignore[misc]


def test_topic_config_replace_returns_validated_copy() -> None:
    cfg = TopicConfig()
    changed = cfg.replace(partitions=3, flush="never")
    assert (changed.partitions, changed.flush) == (3, "never")
    assert cfg.partitions == 1
    with pytest.raises(InvalidConfigError, match="partitions"):
        cfg.replace(partitions=0)


def test_topic_config_replace_raises_invalid_config_naming_unknown_keys() -> None:
    with pytest.raises(InvalidConfigError) as info:
        TopicConfig().replace(retention_hours=5, segment_bytes=100, colour="red")
    message = str(info.value)
    assert "colour" in message and "retention_hours" in message
    assert "segment_bytes" in message  # the known names are listed as a hint


def test_topic_config_from_dict_round_trips_to_dict() -> None:
    cfg = TopicConfig(partitions=4, retention_ms=60_000, flush="interval", partitioner="murmur2")
    data = cfg.to_dict()
    assert data["partitions"] == 4 and data["flush"] == "interval"
    assert TopicConfig.from_dict(data) == cfg
    assert TopicConfig.from_dict({}) == TopicConfig()


def test_topic_config_from_dict_raises_invalid_config_when_key_unknown() -> None:
    with pytest.raises(InvalidConfigError, match=r"segment\.bytes"):
        TopicConfig.from_dict({"segment.bytes": 100})


def test_topic_config_from_dict_raises_invalid_config_when_value_invalid() -> None:
    with pytest.raises(InvalidConfigError, match="partitions"):
        TopicConfig.from_dict({"partitions": "3"})
