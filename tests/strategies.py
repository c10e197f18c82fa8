"""Hypothesis strategies shared by the property and integration tests.

Import as ``from tests.strategies import record_inputs``: the repository root must be on
``sys.path`` (pytest's ``pythonpath`` setting or ``PYTHONPATH``); ``tests/`` needs no
``__init__.py``.
"""

from __future__ import annotations

import random

from hypothesis import strategies as st

from logstore.types import Compression

TIMESTAMP_MIN_MS = 1_000_000_000_000  # 2001-09-09
TIMESTAMP_MAX_MS = 4_102_444_800_000  # 2100-01-01

RecordTuple = tuple[int, "bytes | None", "bytes | None", tuple[tuple[str, "bytes | None"], ...]]


def timestamp_deltas() -> st.SearchStrategy[int]:
    """Deltas from a batch's first timestamp: one-byte, multi-byte and negative varints."""
    return st.one_of(
        st.integers(-63, 63),  # one-byte zig-zag varints
        st.integers(-9_000, 9_000),  # around the 2/3-byte boundary (+-8192)
        st.integers(-(2**36), 2**36),  # days to years: 5- and 6-byte varlongs
        st.sampled_from([-8193, -8192, -65, -64, 64, 8191, 8192]),
    )


def _expand(seed: bytes, size: int, compressible: bool) -> bytes:
    """``size`` bytes from a short ``seed``: cheap for Hypothesis to draw and to shrink."""
    if compressible:
        return (seed * (size // len(seed) + 1))[:size]
    return random.Random(seed).randbytes(size)


def payloads(max_small: int = 300, max_large: int = 20_000) -> st.SearchStrategy[bytes | None]:
    """A key or value: None, small bytes, or now and then a large blob (3-byte lengths)."""
    large = st.builds(
        _expand,
        st.binary(min_size=1, max_size=16),
        st.integers(max_small + 1, max_large),
        st.booleans(),
    )
    return st.one_of(
        st.none(),
        st.binary(max_size=max_small),
        st.binary(max_size=8),
        large,
    )


def header_keys() -> st.SearchStrategy[str]:
    """UTF-8 header keys, ASCII and not (no surrogates: they have no UTF-8 form)."""
    return st.one_of(
        st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
        st.sampled_from(["", "trace-id", "clé", "ключ", "键", "🔑"]),
    )


def headers() -> st.SearchStrategy[tuple[tuple[str, bytes | None], ...]]:
    """0 to 3 headers with str keys and null or bytes values."""
    return st.lists(
        st.tuples(header_keys(), st.none() | st.binary(max_size=40)), max_size=3
    ).map(tuple)


@st.composite
def record_inputs(
    draw: st.DrawFn, min_size: int = 1, max_size: int = 50, large_payloads: bool = True
) -> list[RecordTuple]:
    """A list of ``(timestamp_ms, key, value, headers)`` tuples for ``encode_batch``.

    Timestamps sit around a realistic wall-clock time; their deltas need one- and
    multi-byte varints and may be negative (records need not be in timestamp order).
    """
    first = draw(st.integers(TIMESTAMP_MIN_MS, TIMESTAMP_MAX_MS))
    values = payloads() if large_payloads else st.none() | st.binary(max_size=300)
    return draw(
        st.lists(
            st.tuples(
                timestamp_deltas().map(lambda d: first + d),
                values,
                values,
                headers(),
            ),
            min_size=min_size,
            max_size=max_size,
        )
    )


def compressions() -> st.SearchStrategy[Compression]:
    """Every codec a v2 batch may use."""
    return st.sampled_from(list(Compression))


def base_offsets() -> st.SearchStrategy[int]:
    """Base offsets from 0 to far beyond 32 bits (offsets are int64)."""
    return st.one_of(st.just(0), st.integers(0, 2**31), st.integers(0, 2**62))
