"""The transaction requests of :class:`~logstore.backend.local.LocalBackend`: the
Backend seam's InitProducerId, AddPartitionsToTxn, TxnOffsetCommit and EndTxn, served by
the store's :class:`~logstore.transactions.TransactionCoordinator`."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from logstore.config import (
    DEFAULT_TRANSACTION_TIMEOUT_MS,
    ISOLATION_LEVELS,
    READ_COMMITTED,
    READ_UNCOMMITTED,
)
from logstore.errors import InvalidConfigError
from logstore.store import Store
from logstore.transactions import TransactionCoordinator, transactions_for
from logstore.types import GroupMember, TopicPartition


def committed_isolation(isolation_level: str) -> bool:
    """Whether ``isolation_level`` is ``read_committed`` (checked: a typo is an error)."""
    if isolation_level == READ_COMMITTED:
        return True
    if isolation_level != READ_UNCOMMITTED:
        raise InvalidConfigError(
            f"isolation_level {isolation_level!r} is not one of {', '.join(ISOLATION_LEVELS)}"
        )
    return False


class TransactionRequests:
    """The transaction part of :class:`~logstore.backend.local.LocalBackend`."""

    _store: Store

    if TYPE_CHECKING:

        def check_member(self, member: GroupMember) -> None: ...

        def _appended(self, tp: TopicPartition) -> None: ...

    def init_producer_id(
        self,
        transactional_id: str | None = None,
        transaction_timeout_ms: int = DEFAULT_TRANSACTION_TIMEOUT_MS,
    ) -> tuple[int, int]:
        if transactional_id is None:
            return secrets.randbits(63), 0
        return self._txns.init_producer_id(transactional_id, transaction_timeout_ms)

    @property
    def _txns(self) -> TransactionCoordinator:
        return transactions_for(self._store)

    def add_partitions_to_txn(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        tps: Sequence[TopicPartition],
    ) -> None:
        self._txns.add_partitions(transactional_id, producer_id, producer_epoch, tps)

    def txn_offset_commit(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        group: str,
        offsets: Mapping[TopicPartition, tuple[int, str]],
        *,
        member: GroupMember | None = None,
    ) -> None:
        self._txns.add_offsets(
            transactional_id, producer_id, producer_epoch, group, offsets,
            member=member, check_member=self.check_member,
        )

    def end_txn(
        self, transactional_id: str, producer_id: int, producer_epoch: int, *, commit: bool
    ) -> None:
        ended = self._txns.end_transaction(
            transactional_id, producer_id, producer_epoch, commit=commit
        )
        for tp in ended:
            self._appended(tp)  # the markers move the LSO: wake the fetches waiting there
