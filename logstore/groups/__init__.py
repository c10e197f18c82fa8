"""Consumer-group coordination below the clients: one protocol-neutral state machine.

:class:`GroupCoordinator` runs Kafka's classic group protocol (JoinGroup, SyncGroup,
Heartbeat, LeaveGroup, generations, fencing) for every process sharing a store's
directory, with no server: the embedded consumers use it through the backend, and the
wire server will serve its members from it too. Protocol metadata and assignments are
opaque bytes here.

Layer: may import ``logstore.storage``, ``logstore.errors``, ``logstore.types`` and
``logstore.config``; never the clients, the store, topics or the metadata log.
"""

from __future__ import annotations

from logstore.groups.coordinator import GroupCoordinator
from logstore.groups.files import GROUPS_DIR, group_dir_name, group_from_dir_name
from logstore.groups.state import GroupState, Liveness, Member

__all__ = [
    "GROUPS_DIR",
    "GroupCoordinator",
    "GroupState",
    "Liveness",
    "Member",
    "group_dir_name",
    "group_from_dir_name",
]
