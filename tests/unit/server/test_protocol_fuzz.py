"""Fuzzing the request decoder: whatever the bytes, decoding a request either gives its
fields or raises MalformedRequestError, quickly (no other exception, no hang, no huge
allocation from a lying length).

Three layers: random bytes for every API and version; valid requests generated from the
schemas themselves (they round-trip exactly), then damaged (cut short, bytes flipped,
lengths and counts replaced by hostile values); and the frame header parser. The
atheris fuzzer over the same entry point is in ``tests/server_fuzz_atheris.py``
(marker ``soak``).
"""

from __future__ import annotations

import contextlib
import struct
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logstore.server.protocol.apis import APIS, parse_header
from logstore.server.protocol.codec import (
    BOOL,
    BYTES,
    INT8,
    INT16,
    INT32,
    INT64,
    RECORDS,
    STRING,
    Array,
    MalformedRequestError,
    Struct,
    WireType,
    in_versions,
)
from logstore.server.protocol.messages import Api

CASES = [(api, v) for api in APIS.values() for v in range(api.min_version, api.max_version + 1)]
IDS = [f"{api.name}-v{v}" for api, v in CASES]

_INTS = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}


def _strategy(t: WireType, nullable: bool, version: int) -> st.SearchStrategy[Any]:
    if t in _INTS:
        bits = _INTS[t]
        base: st.SearchStrategy[Any] = st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    elif t is BOOL:
        base = st.booleans()
    elif t is STRING:
        base = st.text(max_size=20)
    elif t in (BYTES, RECORDS):
        base = st.binary(max_size=40)
    elif isinstance(t, Array):
        base = st.lists(_strategy(t.item, False, version), max_size=3)
    elif isinstance(t, Struct):
        base = st.fixed_dictionaries({
            key: _strategy(ft, null, version) for key, ft, null, _ in t.plan(version)
        })
    else:
        raise AssertionError(f"no strategy for {t}")
    return st.none() | base if nullable else base


def _encode(api: Api, version: int, value: dict[str, Any]) -> bytes:
    return b"".join(bytes(c) for c in api.request.encode(value, version))


def _normalize(value: Any) -> Any:
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value


def _decode_or_refuse(api: Api, version: int, data: bytes) -> None:
    with contextlib.suppress(MalformedRequestError):
        api.request.decode(data, version)


@pytest.mark.parametrize(("api", "version"), CASES, ids=IDS)
@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200))
def test_random_bytes_decode_or_raise_malformed(api: Api, version: int, data: bytes) -> None:
    _decode_or_refuse(api, version, data)


@pytest.mark.parametrize(("api", "version"), CASES, ids=IDS)
@settings(max_examples=15, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_valid_requests_round_trip(api: Api, version: int, data: st.DataObject) -> None:
    value = data.draw(_strategy(api.request, False, version))
    decoded = api.request.decode(_encode(api, version, value), version)
    assert _normalize(decoded) == value


@pytest.mark.parametrize(("api", "version"), CASES, ids=IDS)
@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_requests_decode_or_raise_malformed(
    api: Api, version: int, data: st.DataObject
) -> None:
    encoded = bytearray(_encode(api, version, data.draw(_strategy(api.request, False, version))))
    damage = data.draw(st.sampled_from(["cut", "flip", "hostile_length", "append"]))
    if damage == "cut" and encoded:
        del encoded[data.draw(st.integers(0, len(encoded) - 1)):]
    elif damage == "flip" and encoded:
        i = data.draw(st.integers(0, len(encoded) - 1))
        encoded[i] ^= data.draw(st.integers(1, 255))
    elif damage == "hostile_length" and len(encoded) >= 4:
        i = data.draw(st.integers(0, len(encoded) - 4))
        hostile = data.draw(st.sampled_from([-2, -1, 0x7FFFFFFF, 0x7FFF0000, 65535, 1 << 20]))
        encoded[i : i + 4] = struct.pack(">i", hostile)
    else:
        encoded += data.draw(st.binary(min_size=1, max_size=8))
    _decode_or_refuse(api, version, bytes(encoded))


def test_a_lying_array_count_is_refused_before_allocating() -> None:
    produce = APIS[0]
    # transactional_id null, acks, timeout, then an array claiming 2^31-1 topics
    data = b"\xff\xff" + struct.pack(">hii", 1, 1000, 0x7FFFFFFF)
    started = time.monotonic()
    with pytest.raises(MalformedRequestError, match="cannot fit"):
        produce.request.decode(data, 3)
    assert time.monotonic() - started < 0.1


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(MalformedRequestError, match="left over"):
        APIS[18].request.decode(b"\x00", 0)


@given(st.binary(max_size=64))
def test_header_parser_parses_or_raises_malformed(data: bytes) -> None:
    try:
        header = parse_header(data)
    except MalformedRequestError:
        return
    assert 10 <= header.body_at <= len(data)


def test_a_valid_request_of_every_api_decodes_with_the_fields_named_by_the_schema() -> None:
    for api, version in CASES:
        decoded = api.request.decode(_encode(api, version, {}), version)
        assert set(decoded) == {
            key for key, _, _, _ in api.request.plan(version)
        }, api.name
        for field in api.request.fields:
            assert (field.key in decoded) == in_versions(version, field.versions)
