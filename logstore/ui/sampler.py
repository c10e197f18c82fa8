"""The console's clock: every ``interval`` seconds, each partition's log end and each
group's lag, kept for a while (produce rates, the lag charts); the live chart's event
stream sends each new one (:attr:`Sampler.seq` numbers them).

One thread samples; readers take copies under a lock. The history is bounded
(``keep`` samples, 30 minutes at the default interval), so a console left open for days
holds the same memory as one opened a minute ago.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from logstore.types import TopicPartition

from .console import Console

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 2.0
DEFAULT_KEEP = 900
RATE_WINDOW_S = 60.0
"""Produce rates are records per second over (at most) this much of the history."""


@dataclass(frozen=True)
class Sample:
    seq: int
    time: float
    """Unix time, seconds."""
    ends: dict[TopicPartition, int] = field(default_factory=dict)
    lags: dict[str, dict[TopicPartition, int | None]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    """Per topic, the sum of its partitions' ends (what produce rates compare)."""


class Sampler:
    """Samples ``console`` every ``interval`` seconds on a thread of its own."""

    def __init__(
        self, console: Console, *, interval: float = DEFAULT_INTERVAL_S,
        keep: int = DEFAULT_KEEP,
    ) -> None:
        if interval <= 0 or keep < 2:
            raise ValueError(f"interval={interval} must be > 0 and keep={keep} >= 2")
        self.console = console
        self.interval = interval
        self._samples: deque[Sample] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0

    # ------------------------------------------------------------------ life

    def start(self) -> Sampler:
        self.sample_now()
        self._thread = threading.Thread(target=self._run, name="logstore-ui-sampler",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample_now()
            except Exception:  # a failed round (a broker away): log it, try again
                log.warning("logstore ui: sampling failed", exc_info=True)

    def sample_now(self) -> Sample:
        """Take one sample now (the thread does this every interval)."""
        ends = self.console.end_offsets()
        lags: dict[str, dict[TopicPartition, int | None]] = {}
        for group in self.console.group_names():
            try:
                lags[group] = self.console.group_lags(group)
            except LookupError:  # deleted meanwhile
                continue
        totals: dict[str, int] = {}
        for tp, end in ends.items():
            totals[tp.topic] = totals.get(tp.topic, 0) + end
        with self._lock:
            self._seq += 1
            sample = Sample(self._seq, time.time(), ends, lags, totals)
            self._samples.append(sample)
        return sample

    # ------------------------------------------------------------------ reading

    @property
    def seq(self) -> int:
        """The number of the latest sample (0: none yet)."""
        with self._lock:
            return self._seq

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def latest(self) -> Sample | None:
        with self._lock:
            return self._samples[-1] if self._samples else None

    def produce_rate(self, topic: str) -> float | None:
        """Records per second appended to ``topic`` over the last minute (None: fewer
        than two samples with it)."""
        with self._lock:
            if not self._samples:
                return None
            newest = self._samples[-1]
            first = None
            for sample in reversed(self._samples):  # newest first, a minute back at most
                if newest.time - sample.time > RATE_WINDOW_S:
                    break
                if topic in sample.totals:
                    first = sample
        if first is None or first is newest or newest.time <= first.time:
            return None
        grown = newest.totals.get(topic, 0) - first.totals[topic]
        return max(0, grown) / (newest.time - first.time)

    def lag_history(self, group: str) -> dict[str, Any]:
        """The lag of ``group``'s partitions over the history, column by column."""
        samples = [s for s in self.samples() if group in s.lags]
        tps = sorted({tp for s in samples for tp in s.lags[group]})
        return {
            "group": group, "interval_s": self.interval,
            "times": [s.time for s in samples],
            "series": [{"topic": tp.topic, "partition": tp.partition,
                        "lag": [s.lags[group].get(tp) for s in samples]} for tp in tps],
            "total": [sum(v or 0 for v in s.lags[group].values()) for s in samples],
        }


def lag_event(sample: Sample, group: str) -> dict[str, Any] | None:
    """One sample of ``group``'s lag as the event stream sends it (None: the group was
    not there)."""
    lags = sample.lags.get(group)
    if lags is None:
        return None
    return {"time": sample.time, "total": sum(v or 0 for v in lags.values()),
            "partitions": [{"topic": tp.topic, "partition": tp.partition, "lag": lag}
                           for tp, lag in sorted(lags.items())]}
