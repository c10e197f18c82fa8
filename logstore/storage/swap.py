"""Swapping a cleaned segment in for the segments it replaces, crash-safely.

The log cleaner (:mod:`logstore.storage.compaction`) writes a cleaned segment under its
base offset's names plus ``.cleaned`` (``<base>.log.cleaned``, ``.index.cleaned``,
``.timeindex.cleaned``), fsyncs them and the directory, then swaps it in (Kafka's
``.cleaned`` -> ``.swap`` -> rename protocol, with the swap step made explicit):

1. **commit**: write ``<base>.swap`` atomically (a state file naming the segments replaced,
   the cleaned one's base first, and the offset after them). From here the swap happens,
   crash or not; before it, a crash leaves ``.cleaned`` leftovers that the next open
   deletes and the old segments untouched.
2. **complete** (idempotent; the next open redoes it after a crash, before anything reads
   the directory): write the ``<base>.gaps`` marker (a cleaned segment declares offset
   gaps), rename the two index files then the ``.log`` from ``.cleaned`` over the old
   segment's, delete the other replaced segments, fsync the directory, delete the
   descriptor and fsync the directory again (so a stale descriptor can never pair with
   the ``.cleaned`` files of a later, unfinished cleaning).

Other processes reading the partition never mix the two segments' files: a segment's
files opened while a descriptor for its base exists, or whose ``.log`` is no longer the
file its path names, are reopened after the cleaner's new head
(:class:`~logstore.storage.segment_files.SegmentReplacedError`). A read-only open of a
partition with a swap pending reads the swapped view without changing the files
(:func:`pending_view`). The crash-state explorer checks every crash point of a swap
(``tests/reliability/test_power_loss_compaction.py``).
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

from logstore.errors import CorruptionError
from logstore.storage.files import FileSystem
from logstore.storage.gaps import MARKER
from logstore.storage.listing import (
    GAPS_SUFFIX,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    STAGED_SUFFIX,
    TIME_INDEX_SUFFIX,
    Listing,
    segment_path,
    swap_path,
)
from logstore.storage.statefile import read_state, write_state

SWAP_KIND = "cleaner-swap"


class Swap(NamedTuple):
    """One cleaned segment replacing ``replaces`` (bases in order; ``replaces[0]`` is
    the cleaned segment's own base), which held the offsets up to ``end``."""

    replaces: tuple[int, ...]
    end: int

    @property
    def base(self) -> int:
        return self.replaces[0]


def commit_swap(fs: FileSystem, directory: str, swap: Swap) -> None:
    """Write the descriptor that commits ``swap`` (atomically and durably). The cleaned
    segment's ``.cleaned`` files must be durable already."""
    payload = json.dumps({"replaces": list(swap.replaces), "end": swap.end}).encode()
    write_state(fs, swap_path(directory, swap.base), SWAP_KIND, payload)


def read_swap(fs: FileSystem, directory: str, base: int) -> Swap:
    """The swap committed for ``base``.

    Raises:
        CorruptionError: the descriptor is damaged (naming it).
    """
    path = swap_path(directory, base)
    raw = read_state(fs, path, SWAP_KIND)
    try:
        data = json.loads(raw)
        replaces = tuple(data["replaces"])
        end = data["end"]
        if (
            not replaces
            or replaces[0] != base
            or not all(type(b) is int for b in replaces)
            or list(replaces) != sorted(set(replaces))
            or type(end) is not int
            or end <= replaces[-1]
        ):
            raise ValueError(f"bad fields {data!r}")
    except (ValueError, KeyError, TypeError) as err:
        raise CorruptionError(
            f"cleaner swap descriptor {path} is damaged: {err} (the swap it commits "
            f"cannot be finished; restore the partition from a copy)",
            path,
        ) from err
    return Swap(replaces, end)


def complete_swap(fs: FileSystem, directory: str, swap: Swap) -> None:
    """Carry a committed swap out (idempotent: after a crash part-way, call it again)."""
    base = swap.base
    staged_log = segment_path(directory, base, LOG_SUFFIX + STAGED_SUFFIX)
    if fs.exists(staged_log):
        gaps = segment_path(directory, base, GAPS_SUFFIX)
        if not fs.exists(gaps):
            fs.write_file_atomic(gaps, MARKER)
    # Every staged file still there is this swap's (a later cleaning of the same base
    # starts only once this descriptor is durably gone), even when the .log's rename
    # already reached the disk and an index's did not: a power cut may keep any subset.
    for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX):  # the .log last
        staged = segment_path(directory, base, suffix + STAGED_SUFFIX)
        if fs.exists(staged):
            fs.rename(staged, segment_path(directory, base, suffix))
    for other in swap.replaces[1:]:
        for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, GAPS_SUFFIX):
            fs.unlink(segment_path(directory, other, suffix), missing_ok=True)
    fs.fsync_dir(directory)
    fs.unlink(swap_path(directory, base), missing_ok=True)
    fs.fsync_dir(directory)


def complete_pending_swaps(fs: FileSystem, directory: str, listing: Listing) -> int:
    """Finish the swaps a crash interrupted (an open alone, before it reads the
    segments). Returns how many."""
    for base in listing.swaps:
        complete_swap(fs, directory, read_swap(fs, directory, base))
    return len(listing.swaps)


def pending_view(
    fs: FileSystem, directory: str, listing: Listing
) -> tuple[Listing, frozenset[int]]:
    """What a read-only open reads when swaps are pending (it may not finish them): the
    listing with the replaced segments gone and the cleaned ones declaring gaps, and the
    bases whose cleaned segment is still under its ``.cleaned`` names."""
    logs = set(listing.logs)
    gaps = set(listing.gaps)
    staged: set[int] = set()
    for base in listing.swaps:
        swap = read_swap(fs, directory, base)
        logs.difference_update(swap.replaces[1:])
        gaps.difference_update(swap.replaces[1:])
        if fs.exists(segment_path(directory, base, LOG_SUFFIX + STAGED_SUFFIX)):
            staged.add(base)
            logs.add(base)
        if base in logs:
            gaps.add(base)
    staged_names = {
        os.path.basename(segment_path(directory, base, suffix + STAGED_SUFFIX))
        for base in listing.swaps
        for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX)
    }  # the open renames them: they are not leftovers
    view = listing._replace(
        logs=sorted(logs),
        gaps=frozenset(gaps),
        swaps=(),
        leftovers=[n for n in listing.leftovers if n not in staged_names],
    )
    return view, frozenset(staged)


__all__ = [
    "SWAP_KIND",
    "Swap",
    "commit_swap",
    "complete_pending_swaps",
    "complete_swap",
    "pending_view",
    "read_swap",
]
