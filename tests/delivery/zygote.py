"""A fork server for crash tests: imports logstore once, then for every ``go`` line on
stdin forks a child that runs :func:`consume_one_at_a_time` and prints the child's pid;
``wait PID`` reaps a child and prints its exit status. Children start in milliseconds, so
a test can kill hundreds of real consumer processes at random points in seconds.

    python zygote.py DATA_DIR LEDGER_DIR
"""

from __future__ import annotations

import os
import sys

import logstore

TOPIC = "t"
GROUP = "g"


def consume_one_at_a_time(data: str, ledger_path: str) -> None:
    """The README's at-least-once loop: handle a record (append ``h P O`` to the ledger),
    then ``commit()``, then note the commit (``c P O``). A SIGKILL can land anywhere."""
    fd = os.open(ledger_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    with logstore.open(data) as store, store.consumer(
        [TOPIC], group_id=GROUP, auto_offset_reset="earliest", session_timeout_ms=600,
    ) as consumer:
        for record in consumer:
            os.write(fd, b"h %d %d\n" % (record.partition, record.offset))  # handled
            consumer.commit()
            os.write(fd, b"c %d %d\n" % (record.partition, record.offset + 1))


def main() -> None:
    data, ledgers = sys.argv[1], sys.argv[2]
    cycle = 0
    for line in sys.stdin:
        words = line.split()
        if words[0] == "go":
            cycle += 1
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    consume_one_at_a_time(data, os.path.join(ledgers, f"{cycle:05d}"))
                except BaseException as err:
                    print(f"child error: {err!r}", file=sys.stderr, flush=True)
                    code = 1
                os._exit(code)
            print(pid, flush=True)
        elif words[0] == "wait":
            _, status = os.waitpid(int(words[1]), 0)
            print(status, flush=True)


if __name__ == "__main__":
    main()
