"""Compression codecs of record batches, in the framings Kafka's Java client uses.

All four codecs come from one package, ``cramjam`` (Rust bindings, wheels for every
platform we care about, no system libraries): one dependency instead of four
(python-snappy, lz4, zstandard and the stdlib's gzip), and it releases the GIL.

Framings (Kafka ``clients/.../common/compress``):

* gzip: a standard gzip member.
* snappy: xerial ``SnappyOutputStream`` framing: a 16-byte header
  (``\\x82SNAPPY\\x00``, int32 version 1, int32 min-compatible 1), then blocks of
  [int32 big-endian length][raw snappy of at most 32 KiB of input]. Raw (unframed) snappy
  is accepted when reading, as Kafka's reader does.
* lz4: the LZ4 frame format as ``Lz4BlockOutputStream`` writes it: version 01,
  independent blocks, no block or content checksum, no content size, 64 KiB blocks.
  Any valid LZ4 frame is accepted when reading.
* zstd: a standard zstd frame.

No file I/O happens here.
"""

from __future__ import annotations

import struct

import cramjam

from logstore.errors import CorruptRecordError
from logstore.types import Compression

_SNAPPY_MAGIC = b"\x82SNAPPY\x00"
_SNAPPY_HEADER = _SNAPPY_MAGIC + struct.pack(">ii", 1, 1)
_SNAPPY_BLOCK = 32 * 1024
_INT32 = struct.Struct(">i")

_LZ4_MAGIC = struct.pack("<I", 0x184D2204)
_LZ4_FLG = 0x60  # version 01, block independence, no checksums, no content size
_LZ4_BD = 0x40  # block maximum size 64 KiB
_LZ4_BLOCK = 64 * 1024
_LZ4_UNCOMPRESSED = 0x80000000
_UINT32_LE = struct.Struct("<I")


def _xxh32(data: bytes, seed: int = 0) -> int:
    """XXH32 of a short input (< 16 bytes), enough for the LZ4 frame header checksum."""
    p1, p2, p3, p4, p5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
    mask = 0xFFFFFFFF

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & mask

    if len(data) >= 16:
        raise ValueError("_xxh32 handles inputs shorter than 16 bytes only")
    h = (seed + p5 + len(data)) & mask
    i = 0
    while i + 4 <= len(data):
        lane = int.from_bytes(data[i : i + 4], "little")
        h = (rotl((h + lane * p3) & mask, 17) * p4) & mask
        i += 4
    for byte in data[i:]:
        h = (rotl((h + byte * p5) & mask, 11) * p1) & mask
    h ^= h >> 15
    h = (h * p2) & mask
    h ^= h >> 13
    h = (h * p3) & mask
    h ^= h >> 16
    return h


_LZ4_HEADER = _LZ4_MAGIC + bytes(
    [_LZ4_FLG, _LZ4_BD, (_xxh32(bytes([_LZ4_FLG, _LZ4_BD])) >> 8) & 0xFF]
)


def _snappy_compress(data: bytes) -> bytes:
    parts = [_SNAPPY_HEADER]
    view = memoryview(data)
    for start in range(0, len(data), _SNAPPY_BLOCK):
        block = bytes(cramjam.snappy.compress_raw(view[start : start + _SNAPPY_BLOCK]))
        parts += (_INT32.pack(len(block)), block)
    return b"".join(parts)


MAX_DECOMPRESSED_BYTES = 256 << 20
"""A record set larger than this decompressed is refused as corrupt: a batch of a few KiB
(a "decompression bomb") must not cost every reader gigabytes, and snappy's declared
length must not make the codec reserve up to 4 GiB before looking at the data."""
_FIRST_GUESS_RATIO = 8


def _bounded(codec: object, data: bytes) -> bytes:
    """Decompress with ``codec``'s ``decompress_into`` into a buffer that grows (8 times
    the input, doubling) up to the cap; past the cap the payload is refused."""
    size = min(MAX_DECOMPRESSED_BYTES, max(64 * 1024, len(data) * _FIRST_GUESS_RATIO))
    while True:
        out = bytearray(size + 1)  # one spare byte: a full buffer means "more to come"
        try:
            written = int(codec.decompress_into(data, out))  # type: ignore[attr-defined]
        except cramjam.DecompressionError as err:
            if "whole buffer" not in str(err):
                raise
            written = len(out)
        if written <= size:
            return bytes(memoryview(out)[:written])
        if size >= MAX_DECOMPRESSED_BYTES:
            raise ValueError(
                f"decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes, over the limit"
            )
        size = min(MAX_DECOMPRESSED_BYTES, size * 2)


def _snappy_raw(data: bytes | memoryview) -> bytes:
    declared = int(cramjam.snappy.decompress_raw_len(data))
    if declared > MAX_DECOMPRESSED_BYTES:
        raise ValueError(f"snappy block declares {declared} bytes, over the limit")
    return bytes(cramjam.snappy.decompress_raw(data))


def _snappy_decompress(data: bytes) -> bytes:
    if not data.startswith(_SNAPPY_MAGIC):
        return _snappy_raw(data)
    parts = []
    total = 0
    pos = len(_SNAPPY_HEADER)
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError("truncated xerial snappy block length")
        (length,) = _INT32.unpack_from(data, pos)
        pos += 4
        if length < 0 or pos + length > len(data):
            raise ValueError(f"xerial snappy block of {length} bytes overruns the payload")
        parts.append(_snappy_raw(data[pos : pos + length]))
        total += len(parts[-1])
        if total > MAX_DECOMPRESSED_BYTES:
            raise ValueError(f"snappy blocks decompress to over {MAX_DECOMPRESSED_BYTES} bytes")
        pos += length
    return b"".join(parts)


def _lz4_compress(data: bytes) -> bytes:
    parts = [_LZ4_HEADER]
    view = memoryview(data)
    for start in range(0, len(data), _LZ4_BLOCK):
        chunk = view[start : start + _LZ4_BLOCK]
        block = bytes(cramjam.lz4.compress_block(chunk, store_size=False))
        if len(block) >= len(chunk):  # incompressible: store the block as is
            parts += (_UINT32_LE.pack(len(chunk) | _LZ4_UNCOMPRESSED), bytes(chunk))
        else:
            parts += (_UINT32_LE.pack(len(block)), block)
    parts.append(b"\x00\x00\x00\x00")  # end mark
    return b"".join(parts)


def compress(codec: Compression, data: bytes) -> bytes:
    """Compress ``data`` with ``codec`` in Kafka's framing (NONE returns it unchanged)."""
    if codec == Compression.NONE:
        return data
    if codec == Compression.GZIP:
        return bytes(cramjam.gzip.compress(data))
    if codec == Compression.SNAPPY:
        return _snappy_compress(data)
    if codec == Compression.LZ4:
        return _lz4_compress(data)
    if codec == Compression.ZSTD:
        return bytes(cramjam.zstd.compress(data))
    raise ValueError(f"unknown compression codec {codec!r}")


def decompress(codec: Compression, data: bytes) -> bytes:
    """Undo :func:`compress`.

    Raises:
        CorruptRecordError: the payload is not valid for ``codec``.
    """
    try:
        if codec == Compression.NONE:
            return data
        if codec == Compression.GZIP:
            return _bounded(cramjam.gzip, data)
        if codec == Compression.SNAPPY:
            return _snappy_decompress(data)
        if codec == Compression.LZ4:
            return _bounded(cramjam.lz4, data)
        if codec == Compression.ZSTD:
            return _bounded(cramjam.zstd, data)
    except (cramjam.DecompressionError, ValueError, struct.error) as err:
        raise CorruptRecordError(
            f"cannot decompress {codec.name.lower()} record batch: {err}"
        ) from err
    raise CorruptRecordError(f"unknown compression codec {int(codec)} in record batch")
