"""Committing a group's offsets as one of its members, fenced by its generation."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

from logstore.client.backend import Backend
from logstore.client.membership import GroupMembership
from logstore.errors import (
    CommitFailedError,
    FencedInstanceIdError,
    IllegalGenerationError,
    UnknownMemberIdError,
)
from logstore.types import TopicPartition

FENCING_ERRORS = (IllegalGenerationError, UnknownMemberIdError, FencedInstanceIdError)
Fenced = Callable[[IllegalGenerationError | UnknownMemberIdError | FencedInstanceIdError], None]


def commit_offsets(
    backend: Backend,
    group: str,
    chosen: Mapping[TopicPartition, tuple[int, str]],
    membership: GroupMembership | None,
    fenced: Fenced,
) -> None:
    """Commit ``chosen`` for ``group``; as ``membership``'s member if there is one (the
    backend refuses a fenced member's commit atomically with the check).

    A rebalance the member joined may have completed a moment before: the commit then
    goes again in the new generation (the partitions are still its own: cooperative
    rebalancing moves none before its owner gave it up). Otherwise a refused commit
    calls ``fenced(err)`` (the member lost its partitions).

    Raises:
        CommitFailedError: the member was fenced, or is rejoining its group.
    """
    member = None if membership is None else membership.member
    if membership is not None and member is None and chosen:
        raise CommitFailedError(
            f"cannot commit for group {group!r}: this member is rejoining the group (its "
            f"partitions may have moved; poll() first)",
            group,
        )
    try:
        try:
            backend.commit_offsets(group, chosen, member=member)
        except IllegalGenerationError as err:
            if membership is None or not membership.transient(err) or not membership.catch_up():
                raise
            backend.commit_offsets(group, chosen, member=membership.member)
    except FENCING_ERRORS as err:
        with contextlib.suppress(*FENCING_ERRORS):
            fenced(err)
        raise CommitFailedError(
            f"cannot commit for group {group!r}: this member was fenced ({err}); its "
            f"partitions are another member's now",
            group,
        ) from err
