"""``logstore serve --metrics-port``: a Prometheus endpoint with produce/fetch rates and
bytes, request latencies, connections and consumer lag per group and partition, checked
against what a real Kafka client did."""

from __future__ import annotations

import re
import urllib.request
import warnings
from pathlib import Path

import pytest

from tests.server_process import free_port, served

with warnings.catch_warnings():
    # ``import kafka`` trips a DeprecationWarning (importlib.resources.read_text) that
    # pytest's filterwarnings=error would turn into a collection error.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.consumer.subscription_state import OffsetAndMetadata

pytestmark = pytest.mark.slow


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_count_what_clients_did(tmp_path: Path) -> None:
    metrics_port = free_port()
    with served(tmp_path / "data", "--metrics-port", str(metrics_port)) as s:
        producer = KafkaProducer(bootstrap_servers=s.bootstrap, linger_ms=50)
        for i in range(100):
            producer.send("m", b"%03d" % i, partition=0)
        producer.flush(30)
        producer.close()
        consumer = KafkaConsumer(bootstrap_servers=s.bootstrap, group_id="mg",
                                 enable_auto_commit=False)
        tp = TopicPartition("m", 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        got = 0
        while got < 100:
            got += sum(len(v) for v in consumer.poll(timeout_ms=2000).values())
        consumer.commit({tp: OffsetAndMetadata(60, "", -1)})
        seen = _scrape(metrics_port)
        consumer.close()

    assert seen['logstore_produce_records_total{topic="m"}'] == 100
    assert seen['logstore_produce_bytes_total{topic="m"}'] > 100 * 3
    assert seen['logstore_fetch_records_total{topic="m"}'] >= 100
    labels = '{group="mg",topic="m",partition="0"}'
    assert seen["logstore_consumer_group_lag" + labels] == 40
    assert seen["logstore_consumer_group_committed_offset" + labels] == 60
    assert seen['logstore_log_end_offset{topic="m",partition="0"}'] == 100
    assert seen["logstore_connections"] >= 1
    assert seen['logstore_requests_total{api="Produce"}'] >= 1
    fetch = re.compile(r'logstore_request_seconds_bucket\{api="Fetch"')
    fetch_buckets = [k for k in seen if fetch.match(k)]
    assert fetch_buckets and seen['logstore_request_seconds_count{api="Fetch"}'] >= 1
