"""Codec framings of logstore.records.compression, checked against independent libraries.

python-snappy, python-lz4, zstandard and the stdlib's gzip/zlib are the references here:
logstore itself compresses with cramjam, so agreeing with them is not a tautology.
"""

from __future__ import annotations

import gzip
import random
import struct
import warnings

import lz4.frame
import pytest
import snappy
import zstandard

from logstore.errors import CorruptRecordError
from logstore.records.compression import compress, decompress
from logstore.types import Compression

with warnings.catch_warnings():
    # ``import kafka`` trips a DeprecationWarning (importlib.resources.read_text) that
    # pytest's filterwarnings=error would turn into a collection error.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import codec as kafka_codec

CODECS = [c for c in Compression if c != Compression.NONE]

XERIAL_MAGIC = b"\x82SNAPPY\x00"
LZ4_MAGIC = b"\x04\x22\x4d\x18"


def _payload(size: int, seed: int = 7) -> bytes:
    """Half incompressible, half very compressible: both block paths get used."""
    rnd = random.Random(seed).randbytes(size // 2)
    return rnd + (b"logstore record " * (size // 32 + 1))[: size - len(rnd)]


SMALL = b"hello, kafka " * 20
LARGE = _payload(300_000)  # several 32 KiB snappy and 64 KiB lz4 blocks
INCOMPRESSIBLE = random.Random(3).randbytes(100_000)


def _lz4_reference_frame(data: bytes) -> bytes:
    """python-lz4's frame with the settings Kafka's Lz4BlockOutputStream uses."""
    return lz4.frame.compress(
        data,
        block_size=lz4.frame.BLOCKSIZE_MAX64KB,
        block_linked=False,
        content_checksum=False,
        block_checksum=False,
        store_size=False,
    )


def _zstd_decompress(data: bytes) -> bytes:
    # stream_reader also handles frames that do not record their content size.
    with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True) as reader:
        return reader.read()


def _xerial_blocks(framed: bytes) -> list[bytes]:
    blocks = []
    pos = 16
    while pos < len(framed):
        (length,) = struct.unpack_from(">i", framed, pos)
        blocks.append(framed[pos + 4 : pos + 4 + length])
        pos += 4 + length
    assert pos == len(framed)
    return blocks


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("codec", list(Compression), ids=lambda c: c.name.lower())
@pytest.mark.parametrize("data", [b"", b"x", SMALL, LARGE, INCOMPRESSIBLE],
                         ids=["empty", "one-byte", "small", "large", "incompressible"])
def test_compress_round_trips_through_decompress(codec: Compression, data: bytes) -> None:
    assert decompress(codec, compress(codec, data)) == data


def test_compress_returns_data_unchanged_when_codec_none() -> None:
    assert compress(Compression.NONE, SMALL) == SMALL
    assert decompress(Compression.NONE, SMALL) == SMALL


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name.lower())
def test_compress_shrinks_compressible_data(codec: Compression) -> None:
    assert len(compress(codec, SMALL * 50)) < len(SMALL * 50) // 4


# --------------------------------------------------------------------------- gzip


def test_gzip_output_is_a_gzip_member_stdlib_reads() -> None:
    out = compress(Compression.GZIP, LARGE)
    assert out[:2] == b"\x1f\x8b"
    assert gzip.decompress(out) == LARGE


def test_gzip_decompress_reads_stdlib_and_kafka_python_output() -> None:
    assert decompress(Compression.GZIP, gzip.compress(LARGE, mtime=0)) == LARGE
    assert decompress(Compression.GZIP, kafka_codec.gzip_encode(LARGE)) == LARGE


# --------------------------------------------------------------------------- snappy


def test_snappy_output_starts_with_xerial_header() -> None:
    out = compress(Compression.SNAPPY, SMALL)
    assert out.startswith(XERIAL_MAGIC)
    assert out[:16] == XERIAL_MAGIC + struct.pack(">ii", 1, 1)


def test_snappy_output_blocks_hold_at_most_32_kib_of_input() -> None:
    blocks = _xerial_blocks(compress(Compression.SNAPPY, LARGE))
    plain = [snappy.decompress(b) for b in blocks]  # python-snappy, raw format
    assert len(blocks) == -(-len(LARGE) // 32768)
    assert all(len(p) <= 32768 for p in plain)
    assert b"".join(plain) == LARGE


def test_snappy_output_is_read_by_kafka_python_xerial_decoder() -> None:
    assert kafka_codec.snappy_decode(compress(Compression.SNAPPY, LARGE)) == LARGE


def test_snappy_decompress_reads_raw_snappy() -> None:
    raw = snappy.compress(LARGE)
    assert not raw.startswith(XERIAL_MAGIC)
    assert decompress(Compression.SNAPPY, raw) == LARGE


def test_snappy_decompress_reads_kafka_python_xerial_output() -> None:
    framed = kafka_codec.snappy_encode(LARGE, xerial_compatible=True)
    assert framed.startswith(XERIAL_MAGIC)
    assert decompress(Compression.SNAPPY, framed) == LARGE


@pytest.mark.parametrize(
    "tail",
    [b"\x00\x00", b"\xff\xff\xff\xff", b"\x00\x00\x00\x10abc"],
    ids=["truncated-length", "negative-length", "block-overruns"],
)
def test_snappy_decompress_raises_corrupt_when_xerial_block_is_malformed(tail: bytes) -> None:
    with pytest.raises(CorruptRecordError):
        decompress(Compression.SNAPPY, XERIAL_MAGIC + struct.pack(">ii", 1, 1) + tail)


# --------------------------------------------------------------------------- lz4


def test_lz4_output_header_is_kafka_frame_header() -> None:
    out = compress(Compression.LZ4, SMALL)
    assert out[:4] == LZ4_MAGIC
    assert out[4] == 0x60  # version 01, independent blocks, no checksums, no content size
    assert out[5] == 0x40  # 64 KiB maximum block size


def test_lz4_output_header_checksum_matches_python_lz4() -> None:
    # Byte 6 is (xxh32(FLG BD) >> 8) & 0xff; python-lz4 computes it with the reference
    # xxhash for the very same FLG/BD, so the 7 header bytes must agree exactly.
    reference = _lz4_reference_frame(SMALL)
    assert reference[4:6] == b"\x60\x40"  # the reference really uses the same settings
    assert compress(Compression.LZ4, SMALL)[:7] == reference[:7]


@pytest.mark.parametrize("data", [SMALL, LARGE, INCOMPRESSIBLE],
                         ids=["small", "large", "incompressible"])
def test_lz4_output_is_a_frame_python_lz4_reads(data: bytes) -> None:
    assert lz4.frame.decompress(compress(Compression.LZ4, data)) == data


def test_lz4_output_stores_incompressible_block_uncompressed() -> None:
    out = compress(Compression.LZ4, INCOMPRESSIBLE[:1000])
    (block_size,) = struct.unpack_from("<I", out, 7)
    assert block_size == 0x80000000 | 1000
    assert out[11 : 11 + 1000] == INCOMPRESSIBLE[:1000]
    assert out[11 + 1000 :] == b"\x00\x00\x00\x00"  # end mark, no content checksum


def test_lz4_output_blocks_hold_at_most_64_kib_of_input() -> None:
    out = compress(Compression.LZ4, LARGE)
    pos, sizes = 7, []
    while True:
        (word,) = struct.unpack_from("<I", out, pos)
        if word == 0:
            break
        size = word & 0x7FFFFFFF
        sizes.append(size)
        pos += 4 + size
    assert pos + 4 == len(out)
    assert len(sizes) == -(-len(LARGE) // 65536)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"content_checksum": True},
        {"block_checksum": True},
        {"block_linked": True, "block_size": lz4.frame.BLOCKSIZE_MAX4MB},
        {"store_size": False, "block_size": lz4.frame.BLOCKSIZE_MAX256KB},
    ],
    ids=["defaults", "content-checksum", "block-checksum", "linked-4mb", "no-size-256kb"],
)
def test_lz4_decompress_reads_any_valid_frame(options: dict[str, object]) -> None:
    assert decompress(Compression.LZ4, lz4.frame.compress(LARGE, **options)) == LARGE


def test_lz4_decompress_reads_kafka_python_output() -> None:
    assert decompress(Compression.LZ4, kafka_codec.lz4_encode(LARGE)) == LARGE


def test_lz4_decompress_raises_corrupt_when_header_checksum_is_wrong() -> None:
    out = bytearray(compress(Compression.LZ4, SMALL))
    out[6] ^= 0xFF
    with pytest.raises(CorruptRecordError):
        decompress(Compression.LZ4, bytes(out))


# --------------------------------------------------------------------------- zstd


def test_zstd_output_is_a_frame_zstandard_reads() -> None:
    out = compress(Compression.ZSTD, LARGE)
    assert out[:4] == b"\x28\xb5\x2f\xfd"
    assert _zstd_decompress(out) == LARGE


def test_zstd_decompress_reads_zstandard_and_kafka_python_output() -> None:
    assert decompress(Compression.ZSTD, zstandard.ZstdCompressor().compress(LARGE)) == LARGE
    assert decompress(Compression.ZSTD, kafka_codec.zstd_encode(LARGE)) == LARGE


# --------------------------------------------------------------------------- corruption

GARBAGE = [
    b"",
    b"\x00",
    b"garbage, not compressed at all",
    random.Random(11).randbytes(200),
]


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name.lower())
@pytest.mark.parametrize("garbage", GARBAGE, ids=["empty", "zero", "text", "random"])
def test_decompress_raises_corrupt_when_input_is_garbage(codec: Compression,
                                                         garbage: bytes) -> None:
    if codec == Compression.SNAPPY and garbage == b"\x00":
        # b"\x00" is the valid raw snappy encoding of b"" (a varint length 0, no data).
        assert decompress(codec, garbage) == b""
        return
    with pytest.raises(CorruptRecordError):
        decompress(codec, garbage)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name.lower())
@pytest.mark.parametrize("cut", [1, 3, 5000], ids=lambda n: f"cut-{n}")
def test_decompress_raises_corrupt_when_output_is_truncated(codec: Compression,
                                                            cut: int) -> None:
    out = compress(codec, LARGE)
    with pytest.raises(CorruptRecordError):
        decompress(codec, out[:-cut])


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name.lower())
def test_decompress_error_names_the_codec(codec: Compression) -> None:
    with pytest.raises(CorruptRecordError, match=codec.name.lower()):
        decompress(codec, b"garbage, not compressed at all")


def test_compress_raises_value_error_when_codec_unknown() -> None:
    with pytest.raises(ValueError, match="unknown compression codec"):
        compress(5, b"data")  # type: ignore[arg-type]


def test_decompress_snappy_refuses_huge_declared_length_without_allocating() -> None:
    with pytest.raises(CorruptRecordError, match="snappy"):
        decompress(Compression.SNAPPY, b"\xff\xff\xff\xff\x0f")
