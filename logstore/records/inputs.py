"""Checks of what callers pass as a record (key, value, headers, timestamp): each bad
value is an :class:`~logstore.errors.InvalidRecordError` naming it. No I/O happens here."""

from __future__ import annotations

from collections.abc import Mapping

from logstore.errors import InvalidRecordError
from logstore.types import Header, HeadersArg


def normalize_headers(headers: HeadersArg) -> tuple[Header, ...]:
    """Headers as a tuple of ``(str, bytes | None)`` pairs, from a mapping or pairs."""
    if not headers:
        return ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: list[Header] = []
    for item in items:
        try:
            hkey, hvalue = item
        except (TypeError, ValueError) as err:
            raise InvalidRecordError(
                f"header {item!r} is not a (key, value) pair"
            ) from err
        if not isinstance(hkey, str):
            raise InvalidRecordError(f"header key {hkey!r} must be a str")
        if hvalue is not None and not isinstance(hvalue, bytes | bytearray | memoryview):
            raise InvalidRecordError(
                f"header {hkey!r} value {hvalue!r} must be bytes or None (encode text first)"
            )
        out.append((hkey, None if hvalue is None else bytes(hvalue)))
    return tuple(out)


def check_timestamp(timestamp: object) -> int:
    """``timestamp`` if it is milliseconds since the epoch (an int >= 0).

    Raises:
        InvalidRecordError: naming the value.
    """
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise InvalidRecordError(
            f"record timestamp {timestamp!r} must be milliseconds since the epoch "
            f"(an int >= 0) or None for now"
        )
    return timestamp


def check_bytes(what: str, data: object) -> bytes | None:
    if data is None:
        return None
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise InvalidRecordError(
        f"record {what} {data!r:.60} must be bytes or None (encode text, e.g. "
        f"value.encode())"
    )
