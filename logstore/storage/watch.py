"""Hearing of writes other processes make to a file: how a server wakes a waiting fetch
when an embedded producer in another process appends to a partition it serves.

A writer rewrites a partition's ``head`` file after every append
(:mod:`logstore.storage.sharing`), so a modification of that file means "new records".
On Linux, :class:`ChangeWatcher` asks the kernel (inotify) and a thread blocks on it:
nothing polls. Elsewhere the thread compares the files' modification times every
:data:`POLL_S` seconds (through the :class:`~logstore.storage.files.FileSystem` seam; a
time is coarse, so a file written just before the previous look is reported again:
:data:`MTIME_GRANULARITY_MS`).

The inotify descriptor is read here, not in :mod:`logstore.storage.files`: it carries
kernel events, not file data, so a fault-injecting file system has nothing to do with it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import select
import struct
import threading
import time
from collections.abc import Callable, Hashable

from logstore.errors import StorageError
from logstore.storage.files import FileSystem

log = logging.getLogger(__name__)

POLL_S = 0.005
"""How often the portable fallback compares modification times."""
MTIME_GRANULARITY_MS = 20
"""How coarse a file's modification time may be: kernels stamp it from a clock that
moves in ticks (4 ms at Linux's HZ=250, 10 ms at 100), so two writes a few ms apart may
leave the same time. The fallback reports a file modified within this of its previous
look again (harmless: a woken fetch finds nothing and waits on)."""

_IN_MODIFY = 0x002
_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_IGNORED = 0x8000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)


def _inotify() -> tuple[ctypes.CDLL, int] | None:
    """libc and a new non-blocking inotify descriptor; None where there is no inotify."""
    name = ctypes.util.find_library("c")
    if name is None or not hasattr(os, "pipe"):
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, AttributeError):
        return None
    return (libc, fd) if fd >= 0 else None


class ChangeWatcher:
    """Calls ``on_change(key)`` from its own thread when a file watched under ``key`` is
    written (by any process). Thread-safe; :meth:`close` stops the thread."""

    def __init__(self, fs: FileSystem, on_change: Callable[[Hashable], None]) -> None:
        self._fs = fs
        self._on_change = on_change
        self._lock = threading.Lock()
        self._keys: dict[str, Hashable] = {}  # path -> key
        self._by_wd: dict[int, tuple[str, Hashable]] = {}  # watch descriptor -> path, key
        self._mtimes: dict[str, int] = {}
        self._closed = False
        self._thread: threading.Thread | None = None
        found = _inotify()
        self._libc: ctypes.CDLL | None = found[0] if found is not None else None
        self._fd = found[1] if found is not None else -1
        self._wake_r, self._wake_w = os.pipe() if found is not None else (-1, -1)

    @property
    def uses_inotify(self) -> bool:
        return self._fd >= 0

    def watch(self, path: str, key: Hashable) -> None:
        """Report writes to ``path`` as ``key`` from now on (again: cheap; a file deleted
        and made again under that name is watched anew)."""
        with self._lock:
            if self._closed:
                return
            if self._libc is not None:
                # the kernel answers the same watch for the same file, a new one for a new
                # file of that name (whose old one is then retired with IN_IGNORED)
                wd = self._libc.inotify_add_watch(
                    self._fd, os.fsencode(path), _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE
                )
                if wd < 0:
                    err = ctypes.get_errno()
                    log.warning("cannot watch %s for appends: %s", path, os.strerror(err))
                    return
                self._by_wd[wd] = (path, key)
            elif path not in self._keys:
                self._mtimes[path] = self._mtime(path)
            self._keys[path] = key
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="logstore-watch", daemon=True
                )
                self._thread.start()

    def _mtime(self, path: str) -> int:
        try:
            return self._fs.mtime_ms(path)
        except (OSError, StorageError):  # gone for now (a topic deleted, made again)
            return -1

    def _run(self) -> None:
        if self._libc is not None:
            self._run_inotify()
        else:
            self._run_polling()

    def _run_inotify(self) -> None:
        poller = select.poll()  # not select(): a process may have descriptors >= 1024
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._wake_r in ready:
                return
            try:
                data = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                continue
            keys: set[Hashable] = set()
            pos = 0
            while pos + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
                pos += _EVENT.size + length
                with self._lock:
                    found = self._by_wd.get(wd)
                    if found is not None and mask & _IN_IGNORED:
                        del self._by_wd[wd]  # the file is gone (its topic deleted)
                if found is not None:
                    keys.add(found[1])
            self._report(keys)

    def _run_polling(self) -> None:
        stop = threading.Event()
        looked_ms = -MTIME_GRANULARITY_MS  # when the previous look was (ms)
        while not self._closed and not stop.wait(POLL_S):
            with self._lock:
                paths = list(self._keys.items())
            now_ms = time.time_ns() // 1_000_000
            keys: set[Hashable] = set()
            for path, key in paths:
                mtime = self._mtime(path)
                # changed, or written so close to the last look that a later write may
                # have left the (coarse) time as it was
                recent = mtime >= looked_ms - MTIME_GRANULARITY_MS
                if mtime != self._mtimes.get(path) or recent:
                    self._mtimes[path] = mtime
                    keys.add(key)
            looked_ms = now_ms
            self._report(keys)

    def _report(self, keys: set[Hashable]) -> None:
        for key in keys:
            try:
                self._on_change(key)
            except Exception:  # a listener's bug must not stop the watching
                log.exception("append listener failed for %r", key)

    def close(self) -> None:
        """Stop watching (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")
        if thread is not None:
            thread.join(timeout=5)
        for fd in (self._fd, self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
