"""Starting worker programs (``process_worker.py`` and others) and reading what they
report (test helpers).

A :class:`Worker` owns its pipes from the moment it starts: one thread per pipe reads
every line into memory, so nothing is lost between "ready" and the end. (Reading "ready"
with a buffered ``proc.stdout.readline()`` and then calling ``proc.communicate()`` loses
whatever the readline pulled into the buffer after "ready": ``communicate`` reads the raw
pipe, not the buffer.) A full pipe never stalls the worker either, since the threads keep
draining it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

WORKER = str(Path(__file__).with_name("process_worker.py"))
READY = "ready\n"


class Worker:
    """A child process whose stdout and stderr are collected line by line from the start.

    Args:
        argv: the command line.
    """

    def __init__(self, argv: Sequence[str]) -> None:
        self.proc = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._out: list[str] = []
        self._err: list[str] = []
        self._changed = threading.Condition()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._collect, args=(pipe, lines), daemon=True)
            for pipe, lines in ((self.proc.stdout, self._out), (self.proc.stderr, self._err))
        ]
        for reader in self._readers:
            reader.start()

    def _collect(self, pipe: IO[str], lines: list[str]) -> None:
        try:
            for line in pipe:
                with self._changed:
                    lines.append(line)
                    self._changed.notify_all()
        finally:
            pipe.close()
            with self._changed:
                self._changed.notify_all()

    @property
    def args(self) -> object:
        return self.proc.args

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def poll(self) -> int | None:
        return self.proc.poll()

    def running(self) -> bool:
        return self.proc.poll() is None

    def send_signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def kill(self) -> None:
        self.proc.kill()

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until the worker printed its "ready" line.

        Raises:
            AssertionError: it ended, or did not get there within ``timeout`` seconds
                (the worker is killed then); the message holds what it printed.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while READY not in self._out:
                ended = not self._readers[0].is_alive()
                left = deadline - time.monotonic()
                if ended or left <= 0:
                    break
                self._changed.wait(min(left, 0.5))
            else:
                return
        self.proc.kill()
        out, err = self.communicate(timeout=30)
        raise AssertionError(f"worker {self.args!r} did not get ready: {out!r}\n{err}")

    def output(self) -> str:
        """Everything printed on stdout so far (the "ready" line included)."""
        with self._changed:
            return "".join(self._out)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for the worker to end; return all of its stdout and stderr, from the
        first line on (like ``Popen.communicate``, without input).

        Raises:
            subprocess.TimeoutExpired: it is still running after ``timeout`` seconds.
        """
        self.proc.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in self._readers:  # the pipes end with the process (or its children)
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.proc.args, timeout or 0)
        with self._changed:
            return "".join(self._out), "".join(self._err)


def start(*args: object) -> Worker:
    """Start ``process_worker.py ARGS`` and wait until it has opened the store ("ready")."""
    worker = Worker([sys.executable, WORKER, *map(str, args)])
    worker.wait_ready()
    return worker


def rows(output: str, *kinds: str) -> list[tuple[int, int, str]]:
    """``(partition, offset, value)`` of the worker's lines of the given kinds."""
    found = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] in kinds:
            found.append((int(parts[1]), int(parts[2]), parts[3]))
    return found


def produce_all(
    target: str | Path, topic: str, producers: int, count: int
) -> list[tuple[int, int, str]]:
    """Run ``producers`` "produce" workers of ``count`` records each on ``target`` (a data
    directory or a ``kafka://`` address); the ``(partition, offset, value)`` of every
    acknowledged record."""
    procs = [start("produce", target, topic, f"p{i}", count) for i in range(producers)]
    acks = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        acks += rows(out, "rec", "ack")
    return acks

