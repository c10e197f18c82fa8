"""A transactional id's state, as the transaction coordinator
(:mod:`logstore.transactions`) stores it: pure, no I/O (the states and their meaning are in
that module's docstring)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from logstore.errors import CorruptionError

EMPTY = "Empty"
ONGOING = "Ongoing"
PREPARE_COMMIT = "PrepareCommit"
PREPARE_ABORT = "PrepareAbort"
COMPLETE_COMMIT = "CompleteCommit"
COMPLETE_ABORT = "CompleteAbort"
IDLE = (EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT)
PREPARED = (PREPARE_COMMIT, PREPARE_ABORT)

OffsetRow = tuple[str, "str | None", int, int, str]
"""``(topic, topic id, partition, offset, metadata)``: one offset a transaction commits."""


@dataclass
class TxnState:
    """One transactional id's state (see the module docstring)."""

    transactional_id: str
    producer_id: int
    epoch: int
    timeout_ms: int
    state: str = EMPTY
    partitions: list[tuple[str, str | None, int]] = field(default_factory=list)
    """``(topic, topic id, partition)`` the open transaction wrote or may write to."""
    offsets: dict[str, list[OffsetRow]] = field(default_factory=dict)
    """Per group: ``(topic, topic id, partition, offset, metadata)`` to commit."""
    started_ms: int = 0
    updated_ms: int = 0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, payload: bytes, path: str) -> TxnState:
        try:
            data = json.loads(payload)
            st = cls(**data)
            st.partitions = [(t, i, int(p)) for t, i, p in st.partitions]
            st.offsets = {
                g: [(t, i, int(p), int(o), str(m)) for t, i, p, o, m in rows]
                for g, rows in st.offsets.items()
            }
            if st.state not in (*IDLE, ONGOING, *PREPARED):
                raise ValueError(f"unknown state {st.state!r}")
            return st
        except (ValueError, TypeError) as err:
            raise CorruptionError(
                f"transaction state {path} is damaged: {err} (it is skipped; deleting it "
                f"forgets the transactional id, and an open transaction of it is then never "
                f"ended: its partitions' readers stop at it)",
                path,
                0,
            ) from err
