"""What a client learns before its first request: the ApiVersions answer, and the broker
release kafka-python infers from it (it gates features on that)."""

from __future__ import annotations

import warnings

from tests.server_process import RawClient
from tests.wire.differences import KAFKA_API_VERSIONS, expect
from tests.wire.helpers import PYTESTMARK
from tests.wire.targets import Target

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer

pytestmark = PYTESTMARK

API_VERSIONS = 18


def test_api_versions_and_the_release_kafka_python_infers(target: Target) -> None:
    host, port = target.bootstrap.rsplit(":", 1)
    with RawClient(host, int(port), client_id="wire-raw") as raw:
        answer = raw.request(API_VERSIONS, 2, {})
    assert answer["error_code"] == 0
    table = {k["api_key"]: (k["min_version"], k["max_version"]) for k in answer["api_keys"]}
    expect(target.name, "ApiVersions.api_keys", table, KAFKA_API_VERSIONS)

    consumer = KafkaConsumer(bootstrap_servers=target.bootstrap, client_id="wire-infer")
    try:
        inferred = tuple(consumer.config["api_version"])
    finally:
        consumer.close()
    expect(target.name, "kafka-python's inferred broker version", inferred, (4, 3))
