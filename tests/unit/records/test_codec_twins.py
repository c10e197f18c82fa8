"""The compiled record codec (logstore/records/_codec.c) and its pure-Python twins:
which one runs (logstore.records.accel), the golden kafka-python batches through both,
inputs at the edges of the format, and the C source compiling without warnings.

The properties over generated and damaged input are in tests/property/test_codec_twins.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import logstore.records
from logstore.records import accel, batch, decode, validate
from logstore.records.batch import HEADER_SIZE, decode_header
from logstore.records.compression import decompress
from logstore.types import Compression, ConsumerRecord, Record
from tests.compiled_codec import ci_needs_compiled_codec, compiled_codec

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data"
SOURCE = ROOT / "logstore" / "records" / "_codec.c"
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
T0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def codec() -> ModuleType:
    return compiled_codec()


def _outcome(function: Any, *args: object) -> tuple[str, object]:
    try:
        result = function(*args)
    except Exception as err:
        return ("raised", type(err))
    return ("returned", result)


# --------------------------------------------------------------------------- which one runs


def _pure_python_is_bound() -> bool:
    return (
        batch.encode_record_set is batch._encode_record_set
        and decode.decode_record_set is decode._decode_record_set
        and validate.check_record_set is validate._check_record_set
        and logstore.records.encode_varint is batch.encode_varint
        and logstore.records.decode_varint is batch.decode_varint
    )


def test_public_paths_run_the_codec_accel_chose() -> None:
    if os.environ.get(accel.NO_EXTENSIONS_VARIABLE) == "1":
        assert not accel.ACCELERATED
        assert _pure_python_is_bound()
        return
    if ci_needs_compiled_codec():
        assert accel.ACCELERATED, "CI must run the compiled codec: is a C compiler installed?"
    if not accel.ACCELERATED:
        assert _pure_python_is_bound()
        return
    codec = compiled_codec()
    assert logstore.records.ACCELERATED
    assert batch.encode_record_set is codec.encode_records
    assert decode.decode_record_set is codec.decode_record_set
    assert validate.check_record_set is codec.check_record_set
    assert logstore.records.encode_varint is codec.encode_varint
    assert logstore.records.decode_varint is codec.decode_varint


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != accel.NO_EXTENSIONS_VARIABLE}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True,
        text=True, timeout=60, check=True,
    )  # fmt: skip


SELECTED = """
import logstore.records as r
from logstore.records import batch, decode, validate
print(r.ACCELERATED, decode.decode_record_set is decode._decode_record_set,
      validate.check_record_set is validate._check_record_set,
      batch.encode_record_set is batch._encode_record_set,
      r.encode_varint is batch.encode_varint, r.decode_varint is batch.decode_varint)
"""


def test_no_extensions_variable_selects_the_pure_python_codec() -> None:
    ran = _python(SELECTED, LOGSTORE_NO_EXTENSIONS="1")

    assert ran.stdout.split() == ["False"] + ["True"] * 5
    assert ran.stderr == ""  # turned off on purpose: nothing to warn about


def test_missing_compiled_codec_is_logged_once_and_the_pure_python_codec_runs() -> None:
    # None in sys.modules makes the import fail as a codec that was never built does
    code = (
        "import logging, sys\n"
        "logging.basicConfig(format='%(levelname)s %(name)s %(message)s')\n"
        "sys.modules['logstore.records._codec'] = None\n"
        "import logstore.records.accel, logstore.records.decode, logstore\n"
        "import importlib; importlib.import_module('logstore.records.validate')\n" + SELECTED
    )

    ran = _python(code)

    assert ran.stdout.split() == ["False"] + ["True"] * 5
    [warning] = ran.stderr.splitlines()
    assert warning.startswith("WARNING logstore.records.accel logstore: the C record codec ")
    assert "using the pure-Python codec" in warning


# --------------------------------------------------------------------------- golden batches


def _golden_record_set(name: str) -> tuple[bytes, Any, dict[str, Any]]:
    buf = bytes.fromhex((DATA / f"kafka_python_{name}.hex").read_text().strip())
    expected = json.loads((DATA / f"kafka_python_{name}.json").read_text(encoding="utf-8"))
    header = decode_header(buf)
    assert header is not None
    body = buf[HEADER_SIZE : header.size]
    if header.compression != Compression.NONE:
        body = decompress(header.compression, body)
    return body, header, expected


@pytest.mark.parametrize("name", CODECS)
def test_golden_kafka_python_batch_decodes_alike_in_both_twins(
    codec: ModuleType, name: str
) -> None:
    body, header, expected = _golden_record_set(name)
    count, base_offset, base_timestamp = (
        header.records_count, header.base_offset, header.base_timestamp,
    )  # fmt: skip
    calls: list[tuple[Any, ...]] = [
        (None, None, None, Record, None),
        (None, base_offset + 1, None, Record, None),
        (None, base_offset + 1, 2, ConsumerRecord, ("golden", 0)),
        (T0, None, None, Record, None),
        (T0, base_offset + 2, 1, ConsumerRecord, ("golden", 0)),
    ]
    for fixed, start_offset, limit, record_type, topic_partition in calls:
        args = (body, 0, len(body), count, base_offset, base_timestamp, fixed, start_offset,
                limit, record_type, topic_partition)  # fmt: skip
        compiled = codec.decode_record_set(*args)
        assert compiled == decode._decode_record_set(*args)
        assert [type(r) for r in compiled] == [record_type] * len(compiled)

    decoded = codec.decode_record_set(
        body, 0, len(body), count, base_offset, base_timestamp, None, None, None, Record, None
    )
    assert [r.offset for r in decoded] == [r["offset"] for r in expected["records"]]
    assert codec.check_record_set(body, len(body), count) is None
    inputs = [(r.timestamp, r.key, r.value, r.headers) for r in decoded]
    assert codec.encode_records(inputs, base_timestamp) == b"".join(
        batch._encode_records(inputs, base_timestamp)
    )


@pytest.mark.parametrize("name", CODECS)
@pytest.mark.parametrize("cut", [1, 2, 7, 30])
def test_golden_kafka_python_batch_cut_short_fails_alike_in_both_twins(
    codec: ModuleType, name: str, cut: int
) -> None:
    body, header, _ = _golden_record_set(name)
    short = body[:-cut]
    args = (short, 0, len(short), header.records_count, header.base_offset,
            header.base_timestamp, None, None, None, Record, None)  # fmt: skip

    compiled = _outcome(codec.decode_record_set, *args)

    assert compiled == _outcome(decode._decode_record_set, *args)
    assert compiled[0] == "raised"
    assert _outcome(codec.check_record_set, short, len(short), header.records_count) == (
        _outcome(validate._check_record_set, short, len(short), header.records_count)
    )


# --------------------------------------------------------------------------- edges


def _record(ts_delta: bytes, offset_delta: bytes) -> bytes:
    """One record with hand-written timestamp and offset delta varints."""
    body = b"\x00" + ts_delta + offset_delta + b"\x01" + b"\x01" + b"\x00"
    return batch.encode_varint(len(body)) + body


WIDE = bytes([0xFE] * 9 + [0x7F])  # a 10-byte varint of 69 bits: no int64 holds it


@pytest.mark.parametrize(
    ("ts_delta", "offset_delta", "base"),
    [
        (WIDE, b"\x00", 0),
        (b"\x00", WIDE, 0),
        (bytes([0xFF] * 9 + [0x7F]), b"\x02", 5),  # the negative one
        (batch.encode_varint(2**63 - 1), batch.encode_varint(2**63 - 1), 2**63 - 1),
        (batch.encode_varint(-(2**63)), batch.encode_varint(-(2**63)), -(2**63)),
        (b"\x02", b"\x00", 2**80),  # a base no int64 holds
    ],
    ids=["wide_timestamp", "wide_offset", "wide_negative", "sum_past_int64_max",
         "sum_below_int64_min", "huge_base"],
)  # fmt: skip
def test_deltas_past_int64_become_the_same_python_ints(
    codec: ModuleType, ts_delta: bytes, offset_delta: bytes, base: int
) -> None:
    data = _record(ts_delta, offset_delta)
    args = (data, 0, len(data), 1, base, base, None, None, None, Record, None)

    [compiled] = codec.decode_record_set(*args)

    assert [compiled] == decode._decode_record_set(*args)
    assert compiled.timestamp == base + batch.decode_varint(ts_delta, 0)[0]
    assert compiled.offset == base + batch.decode_varint(offset_delta, 0)[0]


def test_a_non_int_base_is_added_as_python_adds_it(codec: ModuleType) -> None:
    data = _record(b"\x02", b"\x02")
    args: tuple[Any, ...] = (data, 0, len(data), 1, 10.5, 0.25, None, None, None, Record, None)

    assert codec.decode_record_set(*args) == decode._decode_record_set(*args)
    assert codec.decode_record_set(*args)[0][:2] == (11.5, 1.25)


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_buffers_other_than_bytes_decode_into_bytes(codec: ModuleType, kind: type[Any]) -> None:
    inputs = [(T0, b"k", b"v", (("h", b"x"),)), (T0 + 1, None, b"w", ())]
    data = batch._encode_record_set(inputs, T0)
    args = (0, len(data), 2, 0, T0, None, None, None, Record, None)

    decoded = codec.decode_record_set(kind(data), *args)

    assert decoded == decode._decode_record_set(data, *args)
    assert {type(r.key) for r in decoded} == {bytes, type(None)}
    assert type(decoded[0].headers[0][1]) is bytes
    assert codec.check_record_set(kind(data), len(data), 2) is None


def test_negative_pos_is_refused_where_the_python_twin_counts_from_the_end(
    codec: ModuleType,
) -> None:
    data = batch._encode_record_set([(T0, b"k", b"v", ())], T0)

    with pytest.raises(ValueError, match="negative"):
        codec.decode_record_set(data, -len(data), 0, 1, 0, T0, None, None, None, Record, None)


def test_a_header_key_not_a_str_is_an_invalid_record_in_both_twins(codec: ModuleType) -> None:
    records = [(T0, None, b"v", ((b"bytes-key", b"x"),))]

    with pytest.raises(logstore.InvalidRecordError, match="must be a str"):
        codec.encode_records(records, T0)
    with pytest.raises(logstore.InvalidRecordError, match="must be a str"):
        batch._encode_record_set(records, T0)


def test_encode_records_of_nothing_is_empty(codec: ModuleType) -> None:
    assert codec.encode_records([], 0) == b"" == batch._encode_record_set([], 0)


# --------------------------------------------------------------------------- the C source


def test_c_source_compiles_without_warnings() -> None:
    compiler = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if compiler is None:
        if ci_needs_compiled_codec():
            pytest.fail("no C compiler: CI builds and runs the compiled codec")
        pytest.skip("no C compiler (gcc or cc) found")
    include = sysconfig.get_paths()["include"]

    ran = subprocess.run(
        [compiler, "-fsyntax-only", "-Wall", "-Wextra", "-Werror", f"-I{include}", str(SOURCE)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert ran.returncode == 0, ran.stderr
