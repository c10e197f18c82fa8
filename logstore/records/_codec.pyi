"""The compiled record codec (``_codec.c``): twins of the pure-Python functions named in
each docstring, every argument positional (:mod:`logstore.records.accel` picks one)."""

from collections.abc import Sequence
from typing import Any

from logstore.records.batch import RecordInput
from logstore.types import Header

def encode_records(records: Sequence[RecordInput], base_timestamp: int, /) -> bytes:
    """``b"".join(batch._encode_records(records, base_timestamp))``."""

def decode_record_set(
    data: bytes,
    pos: int,
    end: int,
    count: int,
    base_offset: int,
    base_timestamp: int,
    fixed_timestamp: int | None,
    start_offset: int | None,
    limit: int | None,
    record_type: type[Any],
    topic_partition: tuple[str, int] | None,
    /,
) -> list[Any]:
    """``decode._decode_record_set`` (``pos`` must not be negative)."""

def check_record_set(data: bytes, end: int, count: int, /) -> None:
    """``validate._check_record_set``."""

def encode_varint(value: int, /) -> bytes:
    """``batch.encode_varint``."""

def decode_varint(buf: bytes | bytearray | memoryview, pos: int, /) -> tuple[int, int]:
    """``batch.decode_varint``."""

def murmur3(key: bytes, /) -> int:
    """``mmh3.hash(key, 0, False)``."""

def send_keyed(
    batches: list[Any], expires: float, key: object, value: object, future_type: type[Any], /
) -> Any:
    """``Producer.send()``'s common case: a future, or None (the Python code decides)."""

class BatchBuilder:
    """``builder.PyBatchBuilder``: ``append`` atomic under the interpreter lock."""

    records: list[tuple[int, bytes | None, bytes | None, Sequence[Header]]]
    size: int
    limit: int
    closed: bool
    def __init__(self, limit: int) -> None: ...
    def append(
        self,
        timestamp: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header],
        size: int,
        /,
    ) -> int: ...
    def close(self) -> int: ...
    def __len__(self) -> int: ...
