"""Which record codec runs: the compiled one (:mod:`logstore.records._codec`, built from
``_codec.c`` when logstore is installed) or the pure-Python functions it is the twin of.

The pure-Python functions stay where they are, as the reference the compiled ones are
tested against (``tests/unit/records/test_codec_twins.py``): ``batch._encode_records``,
``decode._decode_record_set``, ``validate._check_record_set``, ``batch.encode_varint``
and ``batch.decode_varint``. Each of those modules binds the implementation its public
functions use next to its pure-Python twin (``batch.encode_record_set``,
``decode.decode_record_set``, ``validate.check_record_set``), from :data:`codec` here;
this module cannot hand out the chosen functions itself, as it would then import the
modules that import it.

``LOGSTORE_NO_EXTENSIONS=1`` in the environment selects the pure-Python codec even when
the compiled one is built (as aiokafka's ``AIOKAFKA_NO_EXTENSIONS`` does). A compiled codec
that is missing (no C compiler when logstore was installed) is logged once, as a warning,
when this module is first imported. No I/O happens here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from logstore.records.batch import RecordInput

NO_EXTENSIONS_VARIABLE = "LOGSTORE_NO_EXTENSIONS"

log = logging.getLogger(__name__)


class Codec(Protocol):
    """What the compiled module provides (``_codec.pyi``); every argument positional."""

    def encode_records(self, records: Sequence[RecordInput], base_timestamp: int, /) -> bytes: ...

    def decode_record_set(
        self,
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
    ) -> list[Any]: ...

    def check_record_set(self, data: bytes, end: int, count: int, /) -> None: ...

    def encode_varint(self, value: int, /) -> bytes: ...

    def decode_varint(
        self, buf: bytes | bytearray | memoryview, pos: int, /
    ) -> tuple[int, int]: ...

    def murmur3(self, key: bytes, /) -> int: ...

    def send_keyed(
        self, batches: list[Any], expires: float, key: object, value: object,
        future_type: type[Any], /,
    ) -> Any: ...

    @property
    def BatchBuilder(self) -> type[Any]:  # noqa: N802 (the class the module holds)
        """The twin of :class:`logstore.records.builder.PyBatchBuilder`."""
        ...


def _load() -> Codec | None:
    if os.environ.get(NO_EXTENSIONS_VARIABLE) == "1":
        return None
    try:
        # not "from logstore.records import _codec": with this package still importing, its
        # error would blame a circular import for a module that was simply not built
        import logstore.records._codec as _codec  # noqa: PLC0415, PLR0402
    except ImportError as err:
        log.warning(
            "logstore: the C record codec is not built (%s); using the pure-Python codec, "
            "which is several times slower (reinstall logstore where a C compiler is found "
            "to build it)",
            err,
        )
        return None
    return _codec


codec: Codec | None = _load()
"""The compiled codec, or None when the pure-Python functions run."""

ACCELERATED: bool = codec is not None
"""Whether the compiled codec runs."""
