"""The wire server's metrics: the text format (logstore/server/prometheus.py), the
server's metrics and hooks, and the HTTP endpoint end to end on a loopback port
(logstore/server/metrics.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import Any

import pytest

from logstore.server.metrics import LagSample, ServerMetrics, start_metrics_server
from logstore.server.prometheus import (
    CONTENT_TYPE,
    DEFAULT_LATENCY_BUCKETS,
    Counter,
    Gauge,
    Histogram,
    MetricsRegistry,
    escape_label_value,
    format_value,
)

# --------------------------------------------------------------------------- text format


def test_counter_renders_help_type_and_a_line_per_series_sorted():
    counter = Counter("logstore_x_total", "Things done, by api.", ["api"])
    counter.inc(("Produce",))
    counter.inc(("Fetch",), 2)
    counter.inc(("Produce",), 5)

    assert counter.render() == (
        "# HELP logstore_x_total Things done, by api.\n"
        "# TYPE logstore_x_total counter\n"
        'logstore_x_total{api="Fetch"} 2\n'
        'logstore_x_total{api="Produce"} 6\n'
    )


def test_counter_renders_zero_before_any_inc_when_it_has_no_labels():
    bare = Counter("a_total", "A.")
    labeled = Counter("b_total", "B.", ["k"])

    assert bare.render() == "# HELP a_total A.\n# TYPE a_total counter\na_total 0\n"
    assert labeled.render() == "# HELP b_total B.\n# TYPE b_total counter\n"


def test_counter_refuses_to_go_down():
    counter = Counter("a_total", "A.")

    with pytest.raises(ValueError, match="cannot go down"):
        counter.inc(amount=-1)


@pytest.mark.parametrize("labels", [(), ("a", "b"), (3,)], ids=["none", "two", "int"])
def test_counter_refuses_label_values_that_do_not_fit_the_label_names(labels):
    counter = Counter("a_total", "A.", ["topic"])

    with pytest.raises(ValueError, match="label values"):
        counter.inc(labels)
    assert counter.render().count("\n") == 2  # nothing was counted


def test_counter_adds_float_amounts():
    counter = Counter("seconds_total", "S.")
    counter.inc(amount=0.25)
    counter.inc(amount=0.5)

    assert counter.render().endswith("\nseconds_total 0.75\n")


def test_gauge_sets_increments_and_decrements():
    gauge = Gauge("conns", "Open.")
    gauge.inc()
    gauge.inc()
    gauge.dec()
    labeled = Gauge("temp", "T.", ["room"])
    labeled.set(-1.5, ("b",))
    labeled.set(21, ("a",))

    assert gauge.render() == "# HELP conns Open.\n# TYPE conns gauge\nconns 1\n"
    assert labeled.render() == (
        '# HELP temp T.\n# TYPE temp gauge\ntemp{room="a"} 21\ntemp{room="b"} -1.5\n'
    )


def test_gauge_callback_is_read_at_every_render():
    values = iter([3.0, 4.5])
    gauge = Gauge("up_things", "U.", callback=lambda: next(values))

    assert gauge.render().endswith("\nup_things 3\n")
    assert gauge.render().endswith("\nup_things 4.5\n")


def test_gauge_callback_failure_renders_no_sample_and_is_reported():
    def broken() -> float:
        raise OSError("disk gone")

    registry = MetricsRegistry()
    registry.gauge("broken", "B.", callback=broken)
    registry.counter("fine_total", "F.").inc()
    errors: list[tuple[str, BaseException]] = []

    text = registry.render(lambda name, err: errors.append((name, err)))

    assert text == (
        "# HELP broken B.\n# TYPE broken gauge\n"
        "# HELP fine_total F.\n# TYPE fine_total counter\nfine_total 1\n"
    )
    assert [(name, type(err)) for name, err in errors] == [("broken", OSError)]


def test_gauge_refuses_a_callback_with_labels():
    with pytest.raises(ValueError, match="no labels"):
        Gauge("g", "G.", ["k"], callback=lambda: 1.0)


def test_gauge_replace_swaps_every_series_at_once():
    gauge = Gauge("lag", "L.", ["p"])
    gauge.set(5, ("0",))
    gauge.replace({("1",): 7, ("2",): 0})

    assert gauge.render() == '# HELP lag L.\n# TYPE lag gauge\nlag{p="1"} 7\nlag{p="2"} 0\n'
    with pytest.raises(ValueError, match="label values"):
        gauge.replace({("1", "x"): 1})


def test_histogram_renders_cumulative_buckets_sum_and_count():
    histogram = Histogram("req_seconds", "Latency.", ["api"], buckets=[0.1, 1])
    for value in (0.05, 0.5, 3):
        histogram.observe(value, ("Fetch",))

    assert histogram.render() == (
        "# HELP req_seconds Latency.\n"
        "# TYPE req_seconds histogram\n"
        'req_seconds_bucket{api="Fetch",le="0.1"} 1\n'
        'req_seconds_bucket{api="Fetch",le="1"} 2\n'
        'req_seconds_bucket{api="Fetch",le="+Inf"} 3\n'
        'req_seconds_sum{api="Fetch"} 3.55\n'
        'req_seconds_count{api="Fetch"} 3\n'
    )


def test_histogram_counts_a_value_on_a_bound_in_that_bucket():
    histogram = Histogram("h", "H.", buckets=[1, 2, 4])
    for value in (0, 1, 1.0001, 2, 4, 4.5, 100):
        histogram.observe(value)

    lines = histogram.render().splitlines()[2:]

    assert lines == [
        'h_bucket{le="1"} 2',
        'h_bucket{le="2"} 4',
        'h_bucket{le="4"} 5',
        'h_bucket{le="+Inf"} 7',
        "h_sum 112.5001",
        "h_count 7",
    ]
    assert histogram.count() == 7


def test_histogram_renders_zero_buckets_before_any_observation_when_it_has_no_labels():
    histogram = Histogram("h", "H.", buckets=[1, float("inf")])  # +Inf given: not doubled

    assert histogram.render().splitlines()[2:] == [
        'h_bucket{le="1"} 0', 'h_bucket{le="+Inf"} 0', "h_sum 0", "h_count 0",
    ]


def test_histogram_default_buckets_span_half_a_millisecond_to_ten_seconds():
    histogram = Histogram("h", "H.")

    assert histogram.buckets == DEFAULT_LATENCY_BUCKETS
    assert histogram.buckets[0] == 0.0005 and histogram.buckets[-1] == 10
    assert list(histogram.buckets) == sorted(set(histogram.buckets))
    assert 'h_bucket{le="0.0005"} 0' in histogram.render()


@pytest.mark.parametrize(
    ("labels", "buckets", "message"),
    [(["le"], [1], "bucket label"), ([], [2, 1], "increase"), ([], [1, 1], "increase"),
     ([], [], "increase"), ([], [float("nan")], "increase")],
    ids=["le_label", "decreasing", "repeated", "empty", "nan"],
)
def test_histogram_refuses_bad_declarations(labels, buckets, message):
    with pytest.raises(ValueError, match=message):
        Histogram("h", "H.", labels, buckets=buckets)


def test_label_values_escape_backslash_double_quote_and_newline():
    counter = Counter("c_total", "C.", ["group"])
    counter.inc(('a\\b"c\nd',))

    assert counter.render().splitlines()[-1] == 'c_total{group="a\\\\b\\"c\\nd"} 1'
    assert escape_label_value("plain-ünïcode") == "plain-ünïcode"


def test_help_text_escapes_backslash_and_newline_but_not_quotes():
    counter = Counter("c_total", 'Two\nlines, a \\ and "quotes".')

    assert counter.render().splitlines()[0] == '# HELP c_total Two\\nlines, a \\\\ and "quotes".'


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (42, "42"), (2**63, "9223372036854775808"), (1.0, "1"), (10.0, "10"),
     (0.5, "0.5"), (0.0005, "0.0005"), (1e-7, "1e-07"), (1e20, "1e+20"), (-2.5, "-2.5"),
     (float("inf"), "+Inf"), (float("-inf"), "-Inf"), (float("nan"), "NaN")],
)
def test_format_value_writes_what_prometheus_parses(value, text):
    assert format_value(value) == text
    if text not in ("+Inf", "-Inf", "NaN"):
        assert float(text) == value


@pytest.mark.parametrize(
    ("name", "labels"),
    [("1abc", []), ("has-dash", []), ("", []), ("ok", ["bad-label"]), ("ok", ["__reserved"]),
     ("ok", ["a", "a"])],
)
def test_metric_refuses_names_prometheus_does_not_accept(name, labels):
    with pytest.raises(ValueError, match="name"):
        Counter(name, "x", labels)


def test_registry_refuses_a_name_declared_twice():
    registry = MetricsRegistry()
    registry.counter("a_total", "A.")

    with pytest.raises(ValueError, match="already declared"):
        registry.gauge("a_total", "again")


@pytest.mark.parametrize(
    ("first", "second"),
    [(("gauge", "conns"), ("counter", "conns_total")),
     (("counter", "conns_total"), ("counter", "conns")),
     (("histogram", "req_seconds"), ("gauge", "req_seconds_count")),
     (("gauge", "req_seconds_bucket"), ("histogram", "req_seconds"))],
    ids=["gauge_then_total", "total_then_bare", "histogram_then_count", "bucket_then_histogram"],
)
def test_registry_refuses_names_that_read_as_one_family(first, second):
    registry = MetricsRegistry()
    getattr(registry, first[0])(first[1], "first")

    with pytest.raises(ValueError, match=f"clashes with {first[1]}"):
        getattr(registry, second[0])(second[1], "second")


def test_registry_renders_metrics_in_declaration_order():
    registry = MetricsRegistry()
    registry.gauge("z", "Z.")
    registry.counter("a_total", "A.")

    lines = registry.render().splitlines()

    assert [line for line in lines if line.startswith("# TYPE")] == [
        "# TYPE z gauge", "# TYPE a_total counter",
    ]


def test_metric_forget_drops_the_series_with_that_label_value():
    counter = Counter("c_total", "C.", ["topic", "kind"])
    counter.inc(("orders", "x"))
    counter.inc(("orders", "y"))
    counter.inc(("users", "x"))
    counter.forget("topic", "orders")

    assert counter.render().splitlines()[2:] == ['c_total{topic="users",kind="x"} 1']
    with pytest.raises(ValueError):
        counter.forget("partition", "0")


def test_counter_and_histogram_totals_are_exact_when_threads_count_concurrently():
    # Threads race to create the same series (the one path where an unlocked dict could
    # lose a count: two threads both miss, both insert) while another thread renders.
    # CPython 3.11 rarely interleaves there, so this pins the behaviour more than it
    # catches a missing lock; a free-threaded build would.
    registry = MetricsRegistry()
    counter = registry.counter("c_total", "C.", ["k"])
    histogram = registry.histogram("h", "H.", ["k"], buckets=[1])
    threads, per_thread, series = 8, 10_000, 500
    stop = threading.Event()

    def count() -> None:
        for n in range(per_thread):
            labels = (str(n % series),)
            counter.inc(labels)
            histogram.observe(0.5, labels)

    def render() -> None:
        while not stop.is_set():
            registry.render()

    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        renderer = threading.Thread(target=render)
        renderer.start()
        workers = [threading.Thread(target=count) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        stop.set()
        renderer.join()
    finally:
        sys.setswitchinterval(switch_interval)

    each = threads * per_thread // series
    assert {counter.value((str(k),)) for k in range(series)} == {each}
    assert {histogram.count((str(k),)) for k in range(series)} == {each}
    assert f'h_bucket{{k="0",le="1"}} {each}\n' in registry.render()


# --------------------------------------------------------------------------- the server's


def _samples(text: str) -> dict[str, str]:
    """``{'name{labels}': 'value'}`` of every sample line."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.rsplit(" ", 1) for line in lines)


def test_server_metrics_observe_request_counts_requests_errors_and_latency():
    metrics = ServerMetrics()
    metrics.observe_request("Produce", 0.002)
    metrics.observe_request("Produce", 0.2, error=True)
    metrics.observe_request("Fetch", 0.0001, False)

    samples = _samples(metrics.render())

    assert samples['logstore_requests_total{api="Produce"}'] == "2"
    assert samples['logstore_requests_total{api="Fetch"}'] == "1"
    assert samples['logstore_request_errors_total{api="Produce"}'] == "1"
    assert 'logstore_request_errors_total{api="Fetch"}' not in samples
    assert samples['logstore_request_seconds_bucket{api="Produce",le="0.0025"}'] == "1"
    assert samples['logstore_request_seconds_bucket{api="Produce",le="0.25"}'] == "2"
    assert samples['logstore_request_seconds_count{api="Produce"}'] == "2"
    assert samples['logstore_request_seconds_sum{api="Fetch"}'] == "0.0001"


def test_server_metrics_produced_and_fetched_count_records_and_bytes_per_topic():
    metrics = ServerMetrics()
    metrics.produced("orders", 10, 1_000)
    metrics.produced("orders", 5, 600)
    metrics.fetched("orders", 15, 1_600)
    metrics.fetched("users", 1, 90)

    samples = _samples(metrics.render())

    assert samples['logstore_produce_records_total{topic="orders"}'] == "15"
    assert samples['logstore_produce_bytes_total{topic="orders"}'] == "1600"
    assert samples['logstore_fetch_records_total{topic="orders"}'] == "15"
    assert samples['logstore_fetch_bytes_total{topic="users"}'] == "90"


def test_server_metrics_forget_topic_drops_its_series():
    metrics = ServerMetrics()
    metrics.produced("gone", 1, 10)
    metrics.fetched("kept", 1, 10)
    metrics.forget_topic("gone")

    text = metrics.render()

    assert 'topic="gone"' not in text and 'topic="kept"' in text


def test_server_metrics_connections_open_accepted_and_refused():
    metrics = ServerMetrics()
    for _ in range(3):
        metrics.connection_opened()
    metrics.connection_closed()
    metrics.connection_refused("max_connections")
    metrics.connection_refused("max_connections")

    samples = _samples(metrics.render())

    assert samples["logstore_connections"] == "2"
    assert samples["logstore_connections_accepted_total"] == "3"
    assert samples['logstore_connections_refused_total{reason="max_connections"}'] == "2"


def test_server_metrics_lag_comes_from_the_callback_at_every_scrape():
    committed = {"billing": 5}

    def lag() -> Iterable[LagSample]:
        yield LagSample("billing", "orders", 0, committed["billing"], 9)
        yield LagSample("audit", "orders", 0, 12, 9)  # ahead of the log end: lag 0, not -3
        yield LagSample("audit", "orders", 1, -1, 4)  # nothing committed: no lag, no offset

    metrics = ServerMetrics(lag_source=lag)

    samples = _samples(metrics.render())

    assert {k: v for k, v in samples.items() if "group" in k or "log_end" in k} == {
        'logstore_consumer_group_lag{group="audit",topic="orders",partition="0"}': "0",
        'logstore_consumer_group_lag{group="billing",topic="orders",partition="0"}': "4",
        'logstore_consumer_group_committed_offset{group="audit",topic="orders",partition="0"}':
            "12",
        'logstore_consumer_group_committed_offset{group="billing",topic="orders",partition="0"}':
            "5",
        'logstore_log_end_offset{topic="orders",partition="0"}': "9",
        'logstore_log_end_offset{topic="orders",partition="1"}': "4",
    }
    committed["billing"] = 9
    samples = _samples(metrics.render())
    billing = 'logstore_consumer_group_lag{group="billing",topic="orders",partition="0"}'
    assert samples[billing] == "0"
    assert samples["logstore_scrape_errors_total"] == "0"


def test_server_metrics_failing_lag_callback_is_counted_and_the_rest_still_renders(caplog):
    fail = [False]

    def lag() -> Iterable[LagSample]:
        yield LagSample("g", "t", 0, 1, 3)
        if fail[0]:
            raise OSError("offsets file unreadable")

    metrics = ServerMetrics(lag_source=lag)
    metrics.observe_request("Fetch", 0.01)
    assert 'logstore_consumer_group_lag{group="g",topic="t",partition="0"}' in metrics.render()
    fail[0] = True

    with caplog.at_level(logging.DEBUG, logger="logstore.server.metrics"):
        first = _samples(metrics.render())
        second = _samples(metrics.render())

    for samples, errors in ((first, "1"), (second, "2")):
        assert samples["logstore_scrape_errors_total"] == errors
        assert samples['logstore_requests_total{api="Fetch"}'] == "1"
        assert not [k for k in samples if "group" in k or "log_end" in k]  # none, not stale
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].exc_info  # once, with the traceback
    fail[0] = False
    assert "logstore_consumer_group_lag{" in metrics.render()


def test_server_metrics_output_parses_with_prometheus_client():
    parser = pytest.importorskip("prometheus_client.parser")
    metrics = ServerMetrics(lambda: [LagSample('we"ird\\group\n', "t", 0, 1, 5)])
    metrics.observe_request("Produce", 0.003, error=True)
    metrics.produced("t", 3, 300)
    metrics.connection_opened()

    families = {f.name: f for f in parser.text_string_to_metric_families(metrics.render())}

    request_seconds = families["logstore_request_seconds"]
    assert request_seconds.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in request_seconds.samples if "le" in s.labels}
    assert buckets["0.0025"] == 0 and buckets["0.005"] == 1 and buckets["+Inf"] == 1
    [lag] = families["logstore_consumer_group_lag"].samples
    assert lag.labels["group"] == 'we"ird\\group\n' and lag.value == 4
    assert {s.name for f in families.values() for s in f.samples} >= {
        "logstore_requests_total", "logstore_connections", "logstore_scrape_errors_total",
    }


# --------------------------------------------------------------------------- HTTP


def _run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(scenario)


@contextlib.asynccontextmanager
async def _serving(metrics: ServerMetrics, **options: Any) -> AsyncIterator[str]:
    """The base URL of a metrics server on a free loopback port."""
    server = await start_metrics_server(metrics, "127.0.0.1", 0, **options)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def _get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), err.read()


async def _fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(_get, url, method)


async def _raw(url: str, request: bytes) -> bytes:
    """What the server answers to ``request`` sent as is, until it closes."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def test_metrics_endpoint_serves_the_text_format():
    metrics = ServerMetrics()
    metrics.observe_request("ApiVersions", 0.001)

    async def scenario() -> None:
        async with _serving(metrics) as url:
            status, headers, body = await _fetch(url + "/metrics")
            head_status, head_headers, head_body = await _fetch(url + "/metrics", "HEAD")

        assert status == 200
        assert headers["Content-Type"] == CONTENT_TYPE
        assert int(headers["Content-Length"]) == len(body)
        assert headers["Connection"] == "close"
        assert 'logstore_requests_total{api="ApiVersions"} 1\n' in body.decode()
        assert (head_status, head_body) == (200, b"")
        assert head_headers["Content-Type"] == CONTENT_TYPE

    _run(scenario())


def test_metrics_endpoint_root_points_to_metrics_and_other_paths_are_404():
    async def scenario() -> None:
        async with _serving(ServerMetrics()) as url:
            root = await _fetch(url + "/")
            missing = await _fetch(url + "/nope")
            post = await _fetch(url + "/metrics", "POST")

        assert root[0] == 200 and b"/metrics" in root[2]
        assert missing[0] == 404
        assert post[0] == 405 and post[1]["Allow"] == "GET, HEAD"

    _run(scenario())


def test_metrics_endpoint_answers_a_query_string_and_refuses_a_malformed_request_line():
    async def scenario() -> None:
        async with _serving(ServerMetrics()) as url:
            query = await _fetch(url + "/metrics?name[]=x")
            bad = await _raw(url, b"GET /metrics\r\n\r\n")

        assert query[0] == 200
        assert bad.startswith(b"HTTP/1.1 400 ")

    _run(scenario())


def test_metrics_endpoint_refuses_an_oversized_request_line_or_headers():
    async def scenario() -> None:
        async with _serving(ServerMetrics(), max_head_bytes=1024) as url:
            long_line = await _raw(url, b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\n\r\n")
            many_headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(40))
            long_head = await _raw(url, b"GET /metrics HTTP/1.1\r\n" + many_headers + b"\r\n")
            fine = await _fetch(url + "/metrics")

        assert long_line.startswith(b"HTTP/1.1 414 ")
        assert long_head.startswith(b"HTTP/1.1 431 ")
        assert fine[0] == 200

    _run(scenario())


def test_metrics_endpoint_drops_a_silent_client_without_blocking_another_scrape():
    async def scenario() -> None:
        async with _serving(ServerMetrics(), timeout_s=1.0) as url:
            host, port = url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                connected = time.monotonic()
                status, _, body = await _fetch(url + "/metrics")
                scraped = time.monotonic() - connected
                dropped = await asyncio.wait_for(reader.read(), 10)
                held = time.monotonic() - connected
            finally:
                writer.close()
                await writer.wait_closed()

        assert status == 200 and b"logstore_connections 0" in body
        assert scraped < 1.0  # while the silent client was still connected
        assert dropped == b"" and held >= 0.9

    _run(scenario())


def test_metrics_endpoint_closes_connections_beyond_its_limit():
    async def scenario() -> None:
        async with _serving(ServerMetrics(), max_connections=1, timeout_s=5) as url:
            host, port = url.removeprefix("http://").split(":")
            _, writer = await asyncio.open_connection(host, int(port))
            try:
                for _ in range(200):  # until the server has taken the silent connection
                    try:
                        answer = await _raw(url, b"GET /metrics HTTP/1.1\r\n\r\n")
                    except ConnectionResetError:  # closed with the request unread
                        answer = b""
                    if answer == b"":
                        break
                    await asyncio.sleep(0.01)
            finally:
                writer.close()
                await writer.wait_closed()
            after = await _fetch(url + "/metrics")

        assert answer == b""
        assert after[0] == 200

    _run(scenario())


def test_metrics_endpoint_calls_the_lag_callback_in_a_thread_once_for_overlapping_scrapes():
    release = threading.Event()
    calls: list[int] = []

    def slow_lag() -> list[LagSample]:
        calls.append(threading.get_ident())
        release.wait(10)
        return [LagSample("g", "t", 0, 1, 2)]

    async def scenario() -> None:
        async with _serving(ServerMetrics(slow_lag), timeout_s=0.5) as url:
            try:
                first, second = await asyncio.gather(
                    _fetch(url + "/metrics"), _fetch(url + "/metrics")
                )
                root = await _fetch(url + "/")  # the event loop is free meanwhile
                assert len(calls) == 1  # the two overlapping scrapes shared one render
                assert calls[0] != threading.get_ident()  # not the event loop's thread
            finally:
                release.set()
            later = await _fetch(url + "/metrics")

        assert first[0] == second[0] == 503
        assert root[0] == 200
        assert later[0] == 200 and b"logstore_consumer_group_lag{" in later[2]

    _run(scenario())


def test_metrics_endpoint_still_answers_when_the_lag_callback_fails():
    def broken() -> list[LagSample]:
        raise RuntimeError("no offsets")

    async def scenario() -> None:
        async with _serving(ServerMetrics(broken)) as url:
            status, _, body = await _fetch(url + "/metrics")

        assert status == 200
        assert b"logstore_scrape_errors_total 1\n" in body

    _run(scenario())


def test_metrics_endpoint_binds_the_host_it_is_given():
    async def scenario() -> None:
        server = await start_metrics_server(ServerMetrics(), "127.0.0.1", 0)
        try:
            host, port = server.sockets[0].getsockname()[:2]
        finally:
            server.close()
            await server.wait_closed()

        assert host == "127.0.0.1" and port > 0

    _run(scenario())


def test_metrics_endpoint_stopping_with_a_connection_open_logs_no_error(caplog):
    async def scenario() -> None:
        async with _serving(ServerMetrics(), timeout_s=5) as url:
            host, port = url.removeprefix("http://").split(":")
            _, writer = await asyncio.open_connection(host, int(port))
            await asyncio.sleep(0.05)  # the server is reading its request
        # the loop ends now and cancels the handler that still waits for a request
        writer.close()

    with caplog.at_level(logging.DEBUG):
        _run(scenario())

    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_metrics_endpoint_answers_500_when_rendering_fails_and_keeps_serving(caplog):
    metrics = ServerMetrics()
    renders = iter([ZeroDivisionError("a bug"), None])

    def render() -> str:
        error = next(renders)
        if error is not None:
            raise error
        return "# fine\n"

    metrics.render = render  # type: ignore[method-assign]

    async def scenario() -> None:
        async with _serving(metrics) as url:
            failed = await _fetch(url + "/metrics")
            fine = await _fetch(url + "/metrics")

        assert failed[0] == 500
        assert fine[:1] == (200,) and fine[2] == b"# fine\n"

    with caplog.at_level(logging.ERROR, logger="logstore.server.metrics"):
        _run(scenario())

    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [ZeroDivisionError]
