"""The names logstore creates in a partition directory, and what a listing of one holds.

Recovery on open and ``verify`` read the same :class:`Listing`: segment ``.log`` files,
index files without a ``.log`` (orphans, removed on open), producer-state snapshots
(``<offset, 20 digits>.snapshot``, Kafka's name: :mod:`logstore.storage.producers`) and
leftover temporaries (:func:`is_leftover`). No other name is ever touched: a user's
``notes.tmp`` stays.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import NamedTuple

from logstore.storage.checkpoint import CHECKPOINT_NAME
from logstore.storage.files import temp_path
from logstore.storage.head import HEAD_NAME, OPEN_LOCK_NAME, WRITER_LOCK_NAME

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
GAPS_SUFFIX = ".gaps"
"""The marker of a segment that declares offset gaps (:mod:`logstore.storage.gaps`)."""
SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, GAPS_SUFFIX)
"""The suffixes of a segment's own files (a snapshot is not one: it may name any offset)."""
SWAP_SUFFIX = ".swap"
"""A cleaner swap in progress, ``<base, 20 digits>.swap``: the cleaned segment at that base
replaces the segments it lists (:mod:`logstore.storage.swap`)."""
STAGED_SUFFIX = ".cleaned"
"""Appended to a segment file's name while the cleaner writes it (Kafka's name)."""
CLEANER_CHECKPOINT_NAME = "cleaner.checkpoint"
"""Where the cleaner keeps its progress (:mod:`logstore.storage.compaction`)."""
CLEANER_LOCK_NAME = ".cleaner.lock"
"""Held (flock) by the one process cleaning the partition."""
SNAPSHOT_SUFFIX = ".snapshot"
"""A producer-state snapshot: the state of the batches below the offset it is named by."""
_NAME_DIGITS = 20

def segment_path(directory: str, base_offset: int, suffix: str) -> str:
    """The path of a segment file: ``<dir>/<base offset, 20 digits><suffix>``."""
    return os.path.join(directory, f"{base_offset:0{_NAME_DIGITS}d}{suffix}")


def parse_segment_name(name: str) -> tuple[int, str] | None:
    """``(base_offset, suffix)`` for a segment file name, None for any other name."""
    stem, dot, ext = name.partition(".")
    suffix = dot + ext
    if (
        suffix not in SUFFIXES
        or len(stem) != _NAME_DIGITS
        or not (stem.isascii() and stem.isdigit())
    ):
        return None
    return int(stem), suffix


def swap_path(directory: str, base_offset: int) -> str:
    """The path of the cleaner's swap descriptor for the segment at ``base_offset``."""
    return segment_path(directory, base_offset, SWAP_SUFFIX)


def parse_swap_name(name: str) -> int | None:
    """The base offset a swap descriptor's name holds, None for any other name."""
    return _offset_named(name, SWAP_SUFFIX)


def snapshot_path(directory: str, offset: int) -> str:
    """The path of the producer-state snapshot at ``offset``: ``<dir>/<offset>.snapshot``."""
    return segment_path(directory, offset, SNAPSHOT_SUFFIX)


def parse_snapshot_name(name: str) -> int | None:
    """The offset a producer-state snapshot's name holds, None for any other name."""
    return _offset_named(name, SNAPSHOT_SUFFIX)


def _offset_named(name: str, suffix: str) -> int | None:
    """The offset in ``<20 digits><suffix>``, None for any other name."""
    stem = name[: -len(suffix)]
    if not name.endswith(suffix) or len(stem) != _NAME_DIGITS or not (
        stem.isascii() and stem.isdigit()
    ):
        return None
    return int(stem)


def is_segment_log(name: str) -> bool:
    """Whether ``name`` is a segment's ``.log`` file (``<20 digits>.log``)."""
    parsed = parse_segment_name(name)
    return parsed is not None and parsed[1] == LOG_SUFFIX


def segment_log_bases(names: Iterable[str]) -> list[int]:
    """The base offsets of the segment ``.log`` files among ``names``, in order."""
    found = (parse_segment_name(name) for name in names)
    return sorted(parsed[0] for parsed in found if parsed is not None and parsed[1] == LOG_SUFFIX)


_LEFTOVER_SUFFIXES = (".tmp", ".deleted", ".cleaned", ".swap")
_LEFTOVER_NAMES = frozenset({
    os.path.basename(temp_path(CHECKPOINT_NAME)),
    CHECKPOINT_NAME + ".tmp",  # how logstore 0.1 named it
})
_PARTITION_FILES = frozenset({
    CHECKPOINT_NAME, HEAD_NAME, OPEN_LOCK_NAME, WRITER_LOCK_NAME, CLEANER_CHECKPOINT_NAME,
    CLEANER_LOCK_NAME,
})


def is_leftover(name: str) -> bool:
    """Whether ``name`` is a temporary file a partition's own writes can leave behind:
    ``~checkpoint.tmp``, a snapshot's ``~<offset>.snapshot.tmp``, or (older logstore and
    Kafka names, recognised only in exactly this form) ``checkpoint.tmp`` and a segment
    file's name plus ``.tmp``, ``.deleted``, ``.cleaned`` (the cleaner's files before
    their swap) or ``.swap``; the temporaries of a swap descriptor and of the cleaner
    checkpoint (``~<base>.swap.tmp``, ``~cleaner.checkpoint.tmp``)."""
    if name in _LEFTOVER_NAMES:
        return True
    if name.startswith("~") and name.endswith(".tmp"):
        inner = name[1:-4]
        return (
            parse_snapshot_name(inner) is not None
            or parse_swap_name(inner) is not None
            or inner == CLEANER_CHECKPOINT_NAME
        )
    stem, dot, suffix = name.rpartition(".")
    return bool(dot) and dot + suffix in _LEFTOVER_SUFFIXES and (
        parse_segment_name(stem) is not None
    )


def is_partition_file(name: str) -> bool:
    """Whether ``name`` is one logstore creates in a partition directory: a segment file,
    a producer-state snapshot, the checkpoint, the head, a lock file, or a leftover
    (:func:`is_leftover`)."""
    return (
        name in _PARTITION_FILES
        or parse_segment_name(name) is not None
        or parse_snapshot_name(name) is not None
        or parse_swap_name(name) is not None
        or is_leftover(name)
    )


class Listing(NamedTuple):
    """What a partition directory holds, by logstore's names."""

    logs: list[int]
    """Base offsets of the segment ``.log`` files, in order."""
    orphans: list[str]
    """Names of segment files (indexes, markers) whose ``.log`` is missing."""
    leftovers: list[str]
    """Names of leftover temporary files."""
    gaps: frozenset[int]
    """The bases of the segments that declare offset gaps (a ``.gaps`` marker)."""
    snapshots: tuple[int, ...] = ()
    """The offsets of the producer-state snapshots, in order."""
    swaps: tuple[int, ...] = ()
    """The bases of the cleaner swaps left unfinished (``<base>.swap`` descriptors)."""


def read_listing(names: Iterable[str]) -> Listing:
    """Sort the names of a partition directory into a :class:`Listing`."""
    logs: list[int] = []
    others: list[tuple[int, str]] = []
    markers: list[int] = []
    leftovers: list[str] = []
    snapshots: list[int] = []
    swaps: list[int] = []
    for name in names:
        parsed = parse_segment_name(name)
        if parsed is None:
            snapshot = parse_snapshot_name(name)
            swap = parse_swap_name(name)
            if snapshot is not None:
                snapshots.append(snapshot)
            elif swap is not None:
                swaps.append(swap)
            elif is_leftover(name):  # never a segment file's name
                leftovers.append(name)
            continue
        base, suffix = parsed
        if suffix == LOG_SUFFIX:
            logs.append(base)
            continue
        others.append((base, name))
        if suffix == GAPS_SUFFIX:
            markers.append(base)
    logs.sort()
    have = set(logs)
    orphans = sorted(name for base, name in others if base not in have)
    return Listing(
        logs,
        orphans,
        sorted(leftovers),
        frozenset(have.intersection(markers)),
        tuple(sorted(snapshots)),
        tuple(sorted(swaps)),
    )
