"""Counters, gauges and histograms, rendered in the Prometheus text exposition format
0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/).

A :class:`MetricsRegistry` holds the metrics of one server: nothing here is module-level
state. Each metric keeps its series in a dict keyed by the tuple of its label values,
under one lock, so counting costs a lock and a dict update; label values are checked
once, when a series first appears. Rendering takes a snapshot under that lock.

What this module does not know: which metrics the server has (``metrics.py`` declares
them), HTTP, or where any value comes from. No I/O happens here.
"""

from __future__ import annotations

import abc
import bisect
import logging
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
"""Request latency in seconds: 0.5 ms to 10 s (``+Inf`` is always added)."""

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

Labels = tuple[str, ...]
V = TypeVar("V")
M = TypeVar("M", bound="_Metric[Any]")


# --------------------------------------------------------------------------- formatting


def format_value(value: float) -> str:
    """``value`` as Prometheus (Go's ``ParseFloat``) reads it: ``+Inf``, ``-Inf``, ``NaN``,
    whole numbers without a fraction (``10``), others in Python's shortest form."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def escape_label_value(value: str) -> str:
    """A label value escaped for the text format: backslash, double quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _sample(name: str, label_names: Labels, label_values: Labels, value: str) -> str:
    if not label_names:
        return f"{name} {value}\n"
    pairs = ",".join(
        f'{n}="{escape_label_value(v)}"' for n, v in zip(label_names, label_values, strict=True)
    )
    return f"{name}{{{pairs}}} {value}\n"


# --------------------------------------------------------------------------- metrics


class _Metric(abc.ABC, Generic[V]):
    """What every metric shares: a name, help text, label names, and its series: a dict
    from label values to ``V`` under one lock."""

    kind: ClassVar[str]
    _values: dict[Labels, V]

    def __init__(self, name: str, help_text: str, label_names: Sequence[str]) -> None:
        if not _METRIC_NAME.match(name):
            raise ValueError(f"metric name {name!r} is not a Prometheus name ([a-zA-Z_:]...)")
        for label in label_names:
            if not _LABEL_NAME.match(label) or label.startswith("__"):
                raise ValueError(f"metric {name}: label name {label!r} is not allowed")
        if len(set(label_names)) != len(label_names):
            raise ValueError(f"metric {name}: label names {list(label_names)} repeat")
        self.name = name
        self.help_text = help_text
        self.label_names: Labels = tuple(label_names)
        self.names = frozenset(self._sample_names())
        """The names this metric takes: its family name and its samples' names."""
        self._lock = threading.Lock()

    def _sample_names(self) -> list[str]:
        return [self.name]

    def _check(self, labels: Labels) -> None:
        """Refuses label values that do not fit (called when a series first appears)."""
        if len(labels) != len(self.label_names) or not all(isinstance(v, str) for v in labels):
            raise ValueError(
                f"metric {self.name}: label values {labels!r} do not match the label names "
                f"{self.label_names} (one str each)"
            )

    def forget(self, label: str, value: str) -> None:
        """Drops every series whose label ``label`` is ``value`` (a deleted topic)."""
        index = self.label_names.index(label)
        with self._lock:
            for labels in [k for k in self._values if k[index] == value]:
                del self._values[labels]

    def render(self, on_error: Callable[[str, BaseException], None] | None = None) -> str:
        """The HELP and TYPE lines and every sample, in the text format."""
        help_line = f"# HELP {self.name} {_escape_help(self.help_text)}\n"
        return f"{help_line}# TYPE {self.name} {self.kind}\n" + "".join(self._samples(on_error))

    @abc.abstractmethod
    def _samples(self, on_error: Callable[[str, BaseException], None] | None) -> list[str]:
        """The sample lines (a snapshot taken under the lock)."""


class _Scalar(_Metric[float]):
    """A metric with one number per series: a counter or a gauge."""

    def value(self, labels: Labels = ()) -> float:
        """The series' value now (0 if it has none yet)."""
        with self._lock:
            return self._values.get(labels, 0)

    def _samples(self, on_error: Callable[[str, BaseException], None] | None) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [_sample(self.name, self.label_names, k, format_value(v)) for k, v in items]


class Counter(_Scalar):
    """A total that only goes up, one per combination of label values."""

    kind = "counter"

    def _sample_names(self) -> list[str]:
        return [self.name, self.name.removesuffix("_total")]

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, label_names)
        self._values: dict[Labels, float] = {} if self.label_names else {(): 0}

    def inc(self, labels: Labels = (), amount: float = 1) -> None:
        """Adds ``amount`` (not negative) to the series ``labels`` (one value per label)."""
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot go down (amount {amount})")
        with self._lock:
            try:
                self._values[labels] += amount
            except KeyError:
                self._check(labels)
                self._values[labels] = amount


class Gauge(_Scalar):
    """A value that goes up and down: set by the caller, or read from ``callback`` (an
    unlabeled gauge only) at every scrape."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help_text: str,
        label_names: Sequence[str] = (),
        callback: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(name, help_text, label_names)
        if callback is not None and self.label_names:
            raise ValueError(f"gauge {name}: a callback gauge has no labels")
        self.callback = callback
        self._values: dict[Labels, float] = {} if self.label_names else {(): 0}

    def set(self, value: float, labels: Labels = ()) -> None:
        """Sets the series ``labels`` to ``value``."""
        with self._lock:
            if labels not in self._values:
                self._check(labels)
            self._values[labels] = value

    def inc(self, labels: Labels = (), amount: float = 1) -> None:
        """Adds ``amount`` (may be negative) to the series ``labels``."""
        with self._lock:
            try:
                self._values[labels] += amount
            except KeyError:
                self._check(labels)
                self._values[labels] = amount

    def dec(self, labels: Labels = (), amount: float = 1) -> None:
        """Subtracts ``amount`` from the series ``labels``."""
        self.inc(labels, -amount)

    def replace(self, values: Mapping[Labels, float]) -> None:
        """Replaces every series at once (a snapshot computed elsewhere)."""
        for labels in values:
            self._check(labels)
        with self._lock:
            self._values = dict(values)

    def _samples(self, on_error: Callable[[str, BaseException], None] | None) -> list[str]:
        if self.callback is None:
            return super()._samples(on_error)
        try:
            value = float(self.callback())
        except Exception as err:  # one broken gauge must not break the scrape
            log.warning("metrics: the callback of gauge %s failed", self.name, exc_info=True)
            if on_error is not None:
                on_error(self.name, err)
            return []
        return [_sample(self.name, (), (), format_value(value))]


class Histogram(_Metric[list[float]]):
    """Observations counted in fixed buckets (``_bucket{le=...}``, cumulative, with
    ``+Inf``), plus their ``_sum`` and ``_count``."""

    kind = "histogram"

    def _sample_names(self) -> list[str]:
        return [self.name, *(f"{self.name}_{suffix}" for suffix in ("bucket", "sum", "count"))]

    def __init__(
        self,
        name: str,
        help_text: str,
        label_names: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, label_names)
        if "le" in self.label_names:
            raise ValueError(f"histogram {name}: 'le' is the bucket label, not a label name")
        bounds = [float(b) for b in buckets if b != math.inf]
        if not bounds or any(math.isnan(b) for b in bounds) or bounds != sorted(set(bounds)):
            raise ValueError(f"histogram {name}: buckets {list(buckets)} must increase")
        self.buckets = tuple(bounds)
        self._bucket_labels = (*[format_value(b) for b in bounds], "+Inf")
        # per series: a count per bucket (not cumulative), the +Inf bucket, then the sum
        self._values: dict[Labels, list[float]] = {}
        if not self.label_names:
            self._values[()] = [0] * (len(bounds) + 2)

    def observe(self, value: float, labels: Labels = ()) -> None:
        """Counts ``value`` in the first bucket whose bound is >= it, in the series ``labels``."""
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            try:
                state = self._values[labels]
            except KeyError:
                self._check(labels)
                state = self._values[labels] = [0] * (len(self.buckets) + 2)
            state[index] += 1
            state[-1] += value

    def count(self, labels: Labels = ()) -> int:
        """How many observations the series holds."""
        with self._lock:
            state = self._values.get(labels)
            return 0 if state is None else int(sum(state[:-1]))

    def _samples(self, on_error: Callable[[str, BaseException], None] | None) -> list[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._values.items())
        names = (*self.label_names, "le")
        lines = []
        for labels, state in items:
            cumulative = 0.0
            for le, n in zip(self._bucket_labels, state[:-1], strict=True):
                cumulative += n
                lines.append(_sample(f"{self.name}_bucket", names, (*labels, le),
                                     format_value(int(cumulative))))
            lines.append(_sample(f"{self.name}_sum", self.label_names, labels,
                                 format_value(state[-1])))
            lines.append(_sample(f"{self.name}_count", self.label_names, labels,
                                 format_value(int(cumulative))))
        return lines


class MetricsRegistry:
    """The metrics of one server, rendered in the order they were declared."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, _Metric[Any]] = {}

    def _add(self, metric: M) -> M:
        """Declares ``metric``, unless a name it renders or its family name (a counter's
        without ``_total``, as OpenMetrics and prometheus_client read it) is taken:
        a gauge ``x`` and a counter ``x_total`` would be one family to them."""
        with self._lock:
            for other in self._metrics.values():
                if other.names & metric.names:
                    raise ValueError(
                        f"metric {metric.name} is already declared, or clashes with "
                        f"{other.name} (names {sorted(other.names & metric.names)})"
                    )
            self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> Counter:
        """Declares a counter."""
        return self._add(Counter(name, help_text, label_names))

    def gauge(
        self,
        name: str,
        help_text: str,
        label_names: Sequence[str] = (),
        callback: Callable[[], float] | None = None,
    ) -> Gauge:
        """Declares a gauge (``callback``: read at every scrape)."""
        return self._add(Gauge(name, help_text, label_names, callback))

    def histogram(
        self,
        name: str,
        help_text: str,
        label_names: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
    ) -> Histogram:
        """Declares a histogram."""
        return self._add(Histogram(name, help_text, label_names, buckets))

    def render(self, on_error: Callable[[str, BaseException], None] | None = None) -> str:
        """Every metric in the text format. A gauge whose callback fails is rendered
        without a sample and reported to ``on_error(name, error)``; callbacks run first,
        so a counter of such failures already counts them."""
        with self._lock:
            metrics = list(self._metrics.values())
        first = [m for m in metrics if isinstance(m, Gauge) and m.callback is not None]
        text = {m.name: m.render(on_error) for m in first}
        return "".join(text[m.name] if m.name in text else m.render(on_error) for m in metrics)
