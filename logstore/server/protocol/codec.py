"""Kafka's wire types and a declarative message schema, for the non-flexible versions.

A message is a :class:`Struct` of :class:`Field`\\ s, each written the way Kafka's JSON
message definitions write it (``clients/src/main/resources/common/message/*.json``):
a name, a type, the versions it is in (``"0+"``, ``"3-7"``, ``"1"``) and the versions in
which it may be null. A struct decodes into a ``dict`` keyed by the fields' snake_case
names and encodes from one (a missing field takes its default). Field order is wire order.

Types (https://kafka.apache.org/protocol#protocol_types), non-flexible encodings only:

============  =====================================================================
type          wire form
============  =====================================================================
int8..int64   big-endian two's complement
bool          one byte, 0 or 1
string        int16 length N (-1: null) + N bytes of UTF-8
bytes         int32 length N (-1: null) + N bytes
records       as bytes; decoded as a ``memoryview`` of the request (no copy)
[]T           int32 count N (-1: null) + N elements
============  =====================================================================

Decoding never trusts a length: every length and count is checked against the bytes
left before anything is allocated, so a malformed or hostile frame raises
:class:`MalformedRequestError` (never ``IndexError``, ``MemoryError`` or a hang).

No I/O happens here.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from typing import Any, Protocol

from logstore.errors import LogstoreError

Obj = dict[str, Any]
"""A decoded struct: field name (snake_case) -> value."""


class MalformedRequestError(LogstoreError):
    """A request's bytes do not decode as its API and version say (the connection that
    sent it is closed)."""


# --------------------------------------------------------------------------- versions


def parse_versions(spec: str | None) -> tuple[int, int]:
    """``"3+"`` -> (3, 32767), ``"0-7"`` -> (0, 7), ``"2"`` -> (2, 2); None or
    ``"none"`` -> an empty range."""
    if spec is None or spec == "none":
        return (1, 0)
    if spec.endswith("+"):
        return (int(spec[:-1]), 0x7FFF)
    low, _, high = spec.partition("-")
    return (int(low), int(high or low))


def in_versions(version: int, spec: tuple[int, int]) -> bool:
    return spec[0] <= version <= spec[1]


# --------------------------------------------------------------------------- reading


class Reader:
    """Reads wire types from ``data`` starting at ``pos``, refusing to read past the end."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes | memoryview, pos: int = 0) -> None:
        self.data = memoryview(data) if not isinstance(data, memoryview) else data
        self.pos = pos
        self.end = len(data)

    def _need(self, n: int, what: str) -> int:
        pos = self.pos
        if n < 0 or pos + n > self.end:
            raise MalformedRequestError(
                f"request ends inside {what}: {n} bytes needed at position {pos}, "
                f"{self.end - pos} left"
            )
        self.pos = pos + n
        return pos

    def fixed(self, fmt: struct.Struct, what: str) -> Any:
        pos = self._need(fmt.size, what)
        return fmt.unpack_from(self.data, pos)[0]

    def _length(self, fmt: struct.Struct, nullable: bool, what: str) -> int | None:
        """A length prefix: None for a null (-1, where allowed), else n >= 0."""
        n: int = self.fixed(fmt, f"the length of {what}")
        if n >= 0:
            return n
        if n == -1 and nullable:
            return None
        raise MalformedRequestError(f"{what} length {n} at position {self.pos - fmt.size}")

    def string(self, nullable: bool) -> str | None:
        n = self._length(_INT16, nullable, "a string")
        if n is None:
            return None
        pos = self._need(n, "a string")
        try:
            return str(self.data[pos : pos + n], "utf-8")
        except UnicodeDecodeError as err:
            raise MalformedRequestError(
                f"string at position {pos} is not UTF-8: {err.reason}"
            ) from err

    def bytes_view(self, nullable: bool) -> memoryview | None:
        n = self._length(_INT32, nullable, "a bytes field")
        if n is None:
            return None
        pos = self._need(n, "a bytes field")
        return self.data[pos : pos + n]

    def count(self, nullable: bool, min_item_size: int) -> int | None:
        n = self._length(_INT32, nullable, "an array")
        if n is not None and n * max(1, min_item_size) > self.end - self.pos:
            raise MalformedRequestError(
                f"array of {n} items at position {self.pos - 4} cannot fit in the "
                f"{self.end - self.pos} bytes left"
            )
        return n

    def remaining(self) -> int:
        return self.end - self.pos


_INT8 = struct.Struct(">b")
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_INT64 = struct.Struct(">q")


# --------------------------------------------------------------------------- types


Out = list[bytes | memoryview]
"""Where encoding appends its chunks (joined, or written to a socket, by the caller)."""


class WireType(Protocol):
    """A wire type: how one value is read and written."""

    name: str
    min_size: int
    """The fewest bytes one value takes (bounds array counts before allocating)."""

    def read(self, r: Reader, nullable: bool, version: int) -> Any: ...

    def write(self, out: Out, value: Any, nullable: bool, version: int) -> None: ...

    def default(self) -> Any:
        """The value a field of this type takes when an encoded struct omits it."""
        ...


class _Fixed:
    def __init__(self, name: str, fmt: struct.Struct, zero: Any) -> None:
        self.name = name
        self.fmt = fmt
        self.min_size = fmt.size
        self.zero = zero

    def read(self, r: Reader, nullable: bool, version: int) -> Any:
        return r.fixed(self.fmt, f"an {self.name}")

    def write(self, out: Out, value: Any, nullable: bool, version: int) -> None:
        try:
            out.append(self.fmt.pack(value))
        except struct.error as err:
            raise ValueError(f"{value!r} is not an {self.name}: {err}") from err

    def default(self) -> Any:
        return self.zero


class _Bool:
    name = "bool"
    min_size = 1

    def read(self, r: Reader, nullable: bool, version: int) -> bool:
        return bool(r.fixed(_INT8, "a bool"))

    def write(self, out: Out, value: Any, nullable: bool, version: int) -> None:
        out.append(b"\x01" if value else b"\x00")

    def default(self) -> bool:
        return False


class _String:
    name = "string"
    min_size = 2

    def read(self, r: Reader, nullable: bool, version: int) -> str | None:
        return r.string(nullable)

    def write(self, out: Out, value: Any, nullable: bool, version: int) -> None:
        if value is None:
            if not nullable:
                raise ValueError("null in a non-nullable string field")
            out.append(b"\xff\xff")
            return
        data = value.encode("utf-8")
        out.append(_INT16.pack(len(data)))
        out.append(data)

    def default(self) -> str:
        return ""


class _Bytes:
    def __init__(self, name: str) -> None:
        self.name = name
        self.min_size = 4

    def read(self, r: Reader, nullable: bool, version: int) -> memoryview | bytes | None:
        view = r.bytes_view(nullable)
        # records stay a view of the request (no copy); small opaque bytes are copied
        # so a handler may keep them after the request buffer is gone
        return view if view is None or self.name == "records" else bytes(view)

    def write(self, out: Out, value: Any, nullable: bool, version: int) -> None:
        if value is None:
            if not nullable:
                raise ValueError(f"null in a non-nullable {self.name} field")
            out.append(b"\xff\xff\xff\xff")
            return
        out.append(_INT32.pack(len(value)))
        if len(value):
            out.append(value)

    def default(self) -> bytes:
        return b""


class Array:
    """``[]T``: int32 count (-1: null) then the items."""

    min_size = 4

    def __init__(self, item: WireType) -> None:
        self.item = item
        self.name = "[]" + item.name

    def read(self, r: Reader, nullable: bool, version: int) -> list[Any] | None:
        n = r.count(nullable, self.item.min_size)
        if n is None:
            return None
        read = self.item.read
        return [read(r, False, version) for _ in range(n)]

    def write(self, out: Out, value: Any, nullable: bool, version: int) -> None:
        if value is None:
            if not nullable:
                raise ValueError(f"null in a non-nullable {self.name} field")
            out.append(b"\xff\xff\xff\xff")
            return
        out.append(_INT32.pack(len(value)))
        write = self.item.write
        for item in value:
            write(out, item, False, version)

    def default(self) -> list[Any]:
        return []


INT8: WireType = _Fixed("int8", _INT8, 0)
INT16: WireType = _Fixed("int16", _INT16, 0)
INT32: WireType = _Fixed("int32", _INT32, 0)
INT64: WireType = _Fixed("int64", _INT64, 0)
BOOL: WireType = _Bool()
STRING: WireType = _String()
BYTES: WireType = _Bytes("bytes")
RECORDS: WireType = _Bytes("records")


# --------------------------------------------------------------------------- structs


def snake_case(name: str) -> str:
    """Kafka's field name ("PartitionIndex", "timeoutMs") -> "partition_index"."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


class Field:
    """One field of a struct, as Kafka's JSON schema declares it.

    Args:
        name: Kafka's name (``"ThrottleTimeMs"``); the dict key is its snake_case.
        type: the wire type, or a :class:`Struct` / ``Array(Struct)`` for nested data.
        versions: the versions the field is in.
        nullable: the versions in which it may be null.
        default: its value when a struct is encoded without it (else the type's zero).
    """

    __slots__ = ("default", "key", "name", "nullable", "type", "versions")

    def __init__(
        self,
        name: str,
        type: WireType,
        versions: str = "0+",
        nullable: str | None = None,
        default: Any = None,
    ) -> None:
        self.name = name
        self.key = snake_case(name)
        self.type = type
        self.versions = parse_versions(versions)
        self.nullable = parse_versions(nullable)
        self.default = default


class Struct:
    """A sequence of fields; decodes into a dict, encodes from a mapping."""

    def __init__(self, name: str, *fields: Field) -> None:
        self.name = name
        self.fields = fields
        self._plans: dict[int, list[tuple[str, WireType, bool, Any]]] = {}
        self.min_size = 1

    def plan(self, version: int) -> list[tuple[str, WireType, bool, Any]]:
        """``(key, type, nullable, default)`` of the fields in ``version``, in wire order."""
        found = self._plans.get(version)
        if found is None:
            found = self._plans[version] = [
                (f.key, f.type, in_versions(version, f.nullable), f.default)
                for f in self.fields
                if in_versions(version, f.versions)
            ]
        return found

    def read(self, r: Reader, nullable: bool, version: int) -> Obj:
        return {key: t.read(r, null, version) for key, t, null, _ in self.plan(version)}

    def write(self, out: Out, value: Any, nullable: bool, version: int) -> None:
        get = value.get
        for key, t, null, default in self.plan(version):
            v = get(key, _MISSING)
            if v is _MISSING:
                v = t.default() if default is None else default
            try:
                t.write(out, v, null, version)
            except ValueError as err:
                raise ValueError(f"{self.name}.{key}: {err}") from err

    def decode(self, data: bytes | memoryview, version: int, pos: int = 0) -> Obj:
        """Decode a whole body: trailing bytes are an error too."""
        r = Reader(data, pos)
        value = self.read(r, False, version)
        if r.remaining():
            raise MalformedRequestError(
                f"{self.name} v{version}: {r.remaining()} bytes left over after the last field"
            )
        return value

    def encode(self, value: Mapping[str, Any], version: int) -> Out:
        out: Out = []
        self.write(out, value, False, version)
        return out

    def default(self) -> Obj:
        return {}


_MISSING = object()
