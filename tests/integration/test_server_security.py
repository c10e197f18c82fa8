"""TLS and SASL on ``logstore serve``, with real Kafka clients: SCRAM-SHA-256 and PLAIN
against a users file (kafka-python, confluent-kafka), a wrong password refused, no
request served before authentication, TLS (and SASL over TLS), mutual TLS."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import warnings
from pathlib import Path

import pytest

from logstore.server.users import add_user
from tests.server_process import RawClient, served

with warnings.catch_warnings():
    # ``import kafka`` trips a DeprecationWarning (importlib.resources.read_text) that
    # pytest's filterwarnings=error would turn into a collection error.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer

pytestmark = pytest.mark.slow

USER, PASSWORD = "alice", "s3cret-pencil"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost signed by it, and a client
    certificate signed by it (openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("certs")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=logstore test CA")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext")
    return {p.stem + p.suffix.replace(".", "_"): p for p in d.iterdir()}


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.jsonl"
    add_user(path, USER, PASSWORD)
    return path


def _kafka_python_round_trip(bootstrap: str, topic: str, **security: object) -> list[bytes]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, **security)
    for i in range(5):
        producer.send(topic, b"v%d" % i)
    producer.flush(30)
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000, **security)
    values = [m.value for m in consumer]
    consumer.close()
    return values


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_sasl_kafka_python_round_trip(tmp_path: Path, users_file: Path, mechanism: str) -> None:
    with served(tmp_path / "data", "--sasl", mechanism, "--users-file", str(users_file)) as s:
        values = _kafka_python_round_trip(
            s.bootstrap, "secure", security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=mechanism, sasl_plain_username=USER, sasl_plain_password=PASSWORD,
        )
        assert values == [b"v%d" % i for i in range(5)]
        assert f"authenticated as '{USER}' with SASL/{mechanism}" in s.log()


def test_sasl_wrong_password_is_refused(tmp_path: Path, users_file: Path) -> None:
    from confluent_kafka import KafkaError, Producer

    with served(tmp_path / "data", "--sasl", "SCRAM-SHA-256", "--users-file",
                str(users_file)) as s:
        errors: list[KafkaError] = []
        producer = Producer({
            "bootstrap.servers": s.bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": USER,
            "sasl.password": "wrong", "error_cb": errors.append, "log_level": 0,
        })
        for _ in range(50):
            producer.poll(0.1)
            if errors:
                break
        assert errors and errors[0].code() == KafkaError._AUTHENTICATION
        assert "invalid credentials" in errors[0].str()
        assert "failed: wrong password" in s.log()  # the log says which; the client not


def test_no_request_is_served_before_authentication(tmp_path: Path, users_file: Path) -> None:
    with served(tmp_path / "data", "--sasl", "PLAIN", "--users-file", str(users_file)) as s:
        with RawClient(s.host, s.port) as c:
            versions = c.request(18, 0, {})  # allowed: clients ask before authenticating
            assert {17, 36} <= {k["api_key"] for k in versions["api_keys"]}
            c.send(3, 4, {"topics": None, "allow_auto_topic_creation": False})
            assert c.receive() is None  # Metadata before SASL: connection closed
        assert "Metadata request before authenticating" in s.log()


def test_without_sasl_the_sasl_apis_are_not_offered(tmp_path: Path) -> None:
    with served(tmp_path / "data") as s, RawClient(s.host, s.port) as c:
        keys = {k["api_key"] for k in c.request(18, 0, {})["api_keys"]}
        assert not {17, 36} & keys


def test_tls_and_sasl_ssl_with_confluent_kafka_and_kafka_python(
    tmp_path: Path, certs: dict[str, Path], users_file: Path
) -> None:
    from confluent_kafka import Consumer, Producer

    args = ["--tls-cert", str(certs["server_pem"]), "--tls-key", str(certs["server_key"])]
    with served(tmp_path / "data", *args, "--sasl", "SCRAM-SHA-256",
                "--users-file", str(users_file)) as s:
        conf = {
            "bootstrap.servers": s.bootstrap, "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(certs["ca_pem"]), "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": USER, "sasl.password": PASSWORD,
        }
        producer = Producer(conf)
        for i in range(5):
            producer.produce("tls", b"c%d" % i)
        assert producer.flush(30) == 0
        consumer = Consumer({**conf, "group.id": "g", "auto.offset.reset": "earliest"})
        consumer.subscribe(["tls"])
        got: list[bytes] = []
        for _ in range(40):
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.value())
            if len(got) == 5:
                break
        consumer.close()
        assert got == [b"c%d" % i for i in range(5)]
        values = _kafka_python_round_trip(
            s.bootstrap, "tls", security_protocol="SASL_SSL",
            ssl_cafile=str(certs["ca_pem"]), sasl_mechanism="SCRAM-SHA-256",
            sasl_plain_username=USER, sasl_plain_password=PASSWORD,
        )
        assert values == got + [b"v%d" % i for i in range(5)]


def test_mutual_tls_refuses_a_client_without_a_certificate(
    tmp_path: Path, certs: dict[str, Path]
) -> None:
    args = ["--tls-cert", str(certs["server_pem"]), "--tls-key", str(certs["server_key"]),
            "--tls-ca", str(certs["ca_pem"])]
    with served(tmp_path / "data", *args) as s:
        values = _kafka_python_round_trip(
            s.bootstrap, "mtls", security_protocol="SSL", ssl_cafile=str(certs["ca_pem"]),
            ssl_certfile=str(certs["client_pem"]), ssl_keyfile=str(certs["client_key"]),
        )
        assert values == [b"v%d" % i for i in range(5)]
        # without a client certificate: the TLS handshake (or, with TLS 1.3, the first
        # read after it) fails and nothing is served
        context = ssl.create_default_context(cafile=str(certs["ca_pem"]))
        answer = b"?"
        with (
            socket.create_connection((s.host, s.port), 5) as raw,
            contextlib.suppress(ssl.SSLError, ConnectionResetError, BrokenPipeError),
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(RawClient.frame_for(18, 0, 1, "raw", b""))
            answer = tls.recv(4)
        assert answer in (b"", b"?"), "served a client without a certificate"
