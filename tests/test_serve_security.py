"""``logstore serve`` with TLS (and mutual TLS), SASL/PLAIN and SASL/SCRAM-SHA-256.

The SCRAM exchange is checked against RFC 7677's test vector, the users file
by a round trip and its bad lines; then real clients (confluent-kafka, and
kafka-python once) connect with each security protocol: the right
credentials produce and consume the exact records, wrong ones get an
authentication failure and write nothing, a plaintext client on a TLS
listener is refused without disturbing the others. Certificates are made
here with ``cryptography``: a CA, a server certificate for 127.0.0.1 and a
client certificate, all signed by it.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import importlib
import ipaddress
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import logstore
from logstore.server.scram import AuthenticationFailed, Credential, PlainExchange, ScramExchange
from logstore.server.users import UsersFileError, add_user, load_users, remove_user


def _need(module: str) -> Any:
    """``module``, or a skip; under ``LOGSTORE_KAFKA=required`` (CI) a failure instead."""
    if os.environ.get("LOGSTORE_KAFKA", "") == "required":
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            pytest.fail(f"LOGSTORE_KAFKA=required, but {module} is missing: {exc}", pytrace=False)
    return pytest.importorskip(module)


# ------------------------------------------------------------------ SCRAM (RFC 7677)

RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def _rfc_users() -> dict[str, Credential]:
    return {"user": Credential.derive("pencil", salt=RFC_SALT, iterations=4096)}


def test_scram_exchange_matches_rfc_7677() -> None:
    exchange = ScramExchange(_rfc_users().get, nonce=RFC_SERVER_NONCE)
    assert exchange.step(RFC_CLIENT_FIRST) == RFC_SERVER_FIRST
    assert not exchange.done
    assert exchange.step(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    assert (exchange.done, exchange.user) == (True, "user")
    with pytest.raises(AuthenticationFailed, match="already complete"):
        exchange.step(b"c=biws")


def test_scram_refuses_a_wrong_proof_and_an_unknown_user_alike() -> None:
    wrong = RFC_CLIENT_FINAL[:-6] + b"AAAAA="  # the last bytes of the proof changed
    exchange = ScramExchange(_rfc_users().get, nonce=RFC_SERVER_NONCE)
    exchange.step(RFC_CLIENT_FIRST)
    with pytest.raises(AuthenticationFailed, match=r"^invalid user name or password$"):
        exchange.step(wrong)
    assert (exchange.done, exchange.user) == (False, None)
    # A password the credential was not made from: the RFC's proof no longer fits.
    other = {"user": Credential.derive("pencil2", salt=RFC_SALT, iterations=4096)}
    exchange = ScramExchange(other.get, nonce=RFC_SERVER_NONCE)
    assert exchange.step(RFC_CLIENT_FIRST) == RFC_SERVER_FIRST  # same salt, same first answer
    with pytest.raises(AuthenticationFailed, match=r"^invalid user name or password$"):
        exchange.step(RFC_CLIENT_FINAL)
    # An unknown user gets a salt and iterations too (stable per name), and fails at the proof.
    first = ScramExchange({}.get, nonce="x").step(b"n,,n=nobody,r=abc")
    again = ScramExchange({}.get, nonce="x").step(b"n,,n=nobody,r=abc")
    assert first == again
    assert re.fullmatch(rb"r=abcx,s=[A-Za-z0-9+/=]{44},i=8192", first)
    exchange = ScramExchange({}.get, nonce="x")
    exchange.step(b"n,,n=nobody,r=abc")
    with pytest.raises(AuthenticationFailed, match=r"^invalid user name or password$"):
        exchange.step(b"c=biws,r=abcx,p=" + base64.b64encode(bytes(32)))


@pytest.mark.parametrize(
    ("first", "final", "reason"),
    [
        (b"p=tls-unique,,n=user,r=abc", None, "channel binding"),
        (b"n,,r=abc", None, "needs n= and r="),
        (b"n,,n=user,r=abc,m=ext", None, "mandatory extensions"),
        (b"n,,n=us=er,r=abc", None, "bad escape"),
        (b"n,a=other,n=user,r=abc", None, "the user's own"),
        (b"\xff", None, "not UTF-8"),
        (RFC_CLIENT_FIRST, b"c=biws,r=rOprNGfwEbeRWgbNEkqO", "no proof"),
        (RFC_CLIENT_FIRST, b"c=biws,r=rOprNGfwEbeRWgbNEkqOother,p=AAAA", "nonce does not match"),
        (RFC_CLIENT_FIRST, RFC_CLIENT_FINAL.replace(b"c=biws", b"c=eSws"), "channel binding"),
        (RFC_CLIENT_FIRST, RFC_CLIENT_FINAL[:-3] + b"!!=", "bad base64"),
    ],
)
def test_scram_refuses_malformed_messages(first: bytes, final: bytes | None, reason: str) -> None:
    exchange = ScramExchange(_rfc_users().get, nonce=RFC_SERVER_NONCE)
    with pytest.raises(AuthenticationFailed, match=reason):
        exchange.step(first)
        assert final is not None
        exchange.step(final)
    assert not exchange.done


def test_plain_checks_the_password_against_the_scram_credential() -> None:
    users = _rfc_users()
    assert PlainExchange(users.get).step(b"\0user\0pencil") == b""
    exchange = PlainExchange(users.get)
    exchange.step(b"user\0user\0pencil")
    assert (exchange.done, exchange.user) == (True, "user")
    for message, reason in [
        (b"\0user\0pencil!", "^invalid user name or password$"),
        (b"\0nobody\0pencil", "^invalid user name or password$"),
        (b"other\0user\0pencil", "the user's own"),
        (b"user\0pencil", "expected"),
        (b"\0user\0", "empty"),
    ]:
        with pytest.raises(AuthenticationFailed, match=reason):
            PlainExchange(users.get).step(message)


# ------------------------------------------------------------------ the users file


def test_users_file_round_trip_keeps_no_password(tmp_path: Path) -> None:
    path = tmp_path / "users"
    assert add_user(path, "alice", "secret-a", iterations=4096) is False
    assert add_user(path, "bob", "secret-b") is False
    text = path.read_text()
    assert "secret" not in text
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    users = load_users(path)
    assert list(users) == ["alice", "bob"]
    assert (users["alice"].iterations, users["bob"].iterations) == (4096, 8192)
    assert users["alice"].verify_password("secret-a")
    assert not users["alice"].verify_password("secret-b")
    assert users["bob"].verify_password("secret-b")
    assert len(users["alice"].salt) == 32 and users["alice"].salt != users["bob"].salt
    # A new password replaces the entry in place; the other user and the comment are kept.
    assert add_user(path, "alice", "changed", iterations=4096) is True
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# logstore SASL users")
    assert [line.split()[0] for line in lines[1:]] == ["bob", "alice"]
    assert load_users(path)["alice"].verify_password("changed")
    assert load_users(path)["bob"] == users["bob"]
    assert remove_user(path, "bob") is True
    assert remove_user(path, "bob") is False
    assert list(load_users(path)) == ["alice"]


def test_users_file_format_is_as_documented(tmp_path: Path) -> None:
    cred = Credential.derive("pencil", salt=RFC_SALT, iterations=4096)
    path = tmp_path / "users"
    b64 = base64.b64encode
    path.write_text(
        "# comment\n\n"
        f"user SCRAM-SHA-256 server_key={b64(cred.server_key).decode()} iterations=4096 "
        f"stored_key={b64(cred.stored_key).decode()} salt=W22ZaJ0SNY7soEsUEjb6gQ==\n"
    )
    assert load_users(path) == {"user": cred}


GOOD = "iterations=4096 salt=c2FsdA== stored_key=" + "A" * 43 + "= server_key=" + "A" * 43 + "="


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("alice", "expected NAME SCRAM-SHA-256"),
        ("alice PLAIN " + GOOD, "mechanism 'PLAIN'"),
        ("alice SCRAM-SHA-256 " + GOOD + " colour=blue", "unknown field 'colour=blue'"),
        ("alice SCRAM-SHA-256 " + GOOD.replace("iterations=4096 ", ""), "missing iterations"),
        ("alice SCRAM-SHA-256 " + GOOD.replace("4096", "100"), "iterations '100'"),
        ("alice SCRAM-SHA-256 " + GOOD.replace("c2FsdA==", "c2Fsd!=="), "salt is not base64"),
        ("alice SCRAM-SHA-256 " + GOOD.replace("A" * 43 + "=", "AAAA", 1), "stored_key is 3 bytes"),
        ("alice SCRAM-SHA-256 " + GOOD + " salt=eA==", "'salt' given twice"),
        ("bob SCRAM-SHA-256 " + GOOD, "user 'bob' given twice"),
    ],
)
def test_users_file_bad_lines_are_named_by_line_number(
    tmp_path: Path, line: str, reason: str
) -> None:
    path = tmp_path / "users"
    path.write_text(f"# users\nbob SCRAM-SHA-256 {GOOD}\n\n{line}\n")
    with pytest.raises(UsersFileError) as caught:
        load_users(path)
    assert str(caught.value).startswith(f"{path}:4: ")
    assert reason in str(caught.value)
    # Adding a user to a damaged file fails the same way and changes nothing.
    before = path.read_bytes()
    with pytest.raises(UsersFileError, match=f"^{re.escape(str(path))}:4: "):
        add_user(path, "carol", "pw")
    assert path.read_bytes() == before


def test_users_cli_adds_from_stdin_and_lists(tmp_path: Path) -> None:
    path = tmp_path / "users"
    cmd = [sys.executable, "-m", "logstore", "users"]
    done = subprocess.run(
        [*cmd, "add", str(path), "alice"], input="s3cret\n", capture_output=True, text=True
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", f"added alice in {path}\n")
    done = subprocess.run(
        [*cmd, "add", str(path), "alice", "--iterations", "4096"],
        input="n3w\n",
        capture_output=True,
        text=True,
    )
    assert (done.returncode, done.stderr) == (0, f"updated alice in {path}\n")
    assert "n3w" not in path.read_text()
    assert load_users(path)["alice"].verify_password("n3w")
    assert load_users(path)["alice"].iterations == 4096
    done = subprocess.run([*cmd, "list", str(path)], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "alice\n")
    done = subprocess.run(
        [*cmd, "add", str(path), "bad name"], input="pw\n", capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr == (
        "logstore: user name 'bad name': must be non-empty, without whitespace, "
        "not start with '#'\n"
    )
    done = subprocess.run([*cmd, "remove", str(path), "nobody"], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (1, f"logstore: {path}: no user 'nobody'\n")


# ------------------------------------------------------------------ certificates


def _make_certs(directory: Path) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("logstore test CA"))
        .issuer_name(name("logstore test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    out = {"ca": str(directory / "ca.pem")}
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(cn: str, usage: Any, san: list[x509.GeneralName]) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        (directory / f"{cn}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_key(key, directory / f"{cn}.key")
        out[cn], out[f"{cn}-key"] = str(directory / f"{cn}.pem"), str(directory / f"{cn}.key")

    leaf(
        "server",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    leaf("client", ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("client")])
    return out


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    _need("cryptography")
    return _make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("users") / "users"
    add_user(path, "alice", "alice-secret", iterations=4096)
    add_user(path, "bob", "bob-secret", iterations=4096)
    return str(path)


# ------------------------------------------------------------------ real clients

TOPIC = "secured"
RECORDS = [(f"k{i}".encode(), f"value-{i}".encode()) for i in range(20)]


@contextlib.contextmanager
def _served(root: Path, **options: Any) -> Iterator[str]:
    """A root with TOPIC (2 partitions), served with ``options``; yields the bootstrap address."""
    _need("kio")
    with logstore.Broker.open(root) as broker:
        if TOPIC not in broker.topics():
            broker.create_topic(TOPIC, partitions=2)
    with logstore.serve(root, listen="127.0.0.1:0", **options) as server:
        assert server.address is not None
        yield f"127.0.0.1:{server.address[1]}"


def _stored(root: Path) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """Every record of TOPIC as (partition, offset, key, value), once the server is closed."""
    with logstore.Broker.open(root) as broker:
        topic = broker.topic(TOPIC)
        return [(p, r.offset, r.key, r.value) for p in range(2) for r in topic.partition(p).read(0)]


def _ck() -> Any:
    return _need("confluent_kafka")


def _produce_consume(settings: dict[str, Any]) -> None:
    """Produce RECORDS to partition 0 with ``acks=all``, then read them back exactly."""
    ck = _ck()
    producer = ck.Producer({**settings, "acks": "all", "message.timeout.ms": 10000})
    for key, value in RECORDS:
        producer.produce(TOPIC, key=key, value=value, partition=0)
    assert producer.flush(15) == 0
    consumer = ck.Consumer(
        {**settings, "group.id": "g-" + os.urandom(4).hex(), "enable.auto.commit": False}
    )
    try:
        consumer.assign([ck.TopicPartition(TOPIC, 0, 0)])
        got: list[tuple[int, bytes, bytes]] = []
        deadline = time.monotonic() + 15
        while len(got) < len(RECORDS) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            got.append((message.offset(), message.key(), message.value()))
    finally:
        consumer.close()
    assert got == [(i, k, v) for i, (k, v) in enumerate(RECORDS)]


def _expect_refused(settings: dict[str, Any]) -> list[Any]:
    """A producer with ``settings`` gets errors (the error callback's) and delivers nothing.

    Waits for the first error, then purges the record: its delivery must report failure.
    """
    ck = _ck()
    errors: list[Any] = []
    failed: list[Any] = []
    producer = ck.Producer({**settings, "acks": "all", "error_cb": errors.append})
    producer.produce(
        TOPIC, value=b"must not be written", partition=0, on_delivery=lambda e, m: failed.append(e)
    )
    deadline = time.monotonic() + 15
    while not errors and time.monotonic() < deadline:
        producer.poll(0.05)
    assert errors, "the client saw no error"
    producer.purge()
    producer.flush(5)
    assert len(failed) == 1 and failed[0] is not None  # not delivered
    return errors


def _ssl(certs: dict[str, str], *, client_cert: bool = False) -> dict[str, Any]:
    settings = {"security.protocol": "SSL", "ssl.ca.location": certs["ca"]}
    if client_cert:
        settings |= {
            "ssl.certificate.location": certs["client"],
            "ssl.key.location": certs["client-key"],
        }
    return settings


def _sasl(mechanism: str, user: str, password: str, protocol: str = "SASL_PLAINTEXT") -> dict:
    return {
        "security.protocol": protocol,
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


def _expected_records() -> list[tuple[int, int, bytes, bytes]]:
    return [(0, i, k, v) for i, (k, v) in enumerate(RECORDS)]


def test_tls_client_produces_and_consumes(tmp_path: Path, certs: dict[str, str]) -> None:
    tls = {"tls_cert": certs["server"], "tls_key": certs["server-key"]}
    with _served(tmp_path, **tls) as address:
        _produce_consume({"bootstrap.servers": address, **_ssl(certs)})
    assert _stored(tmp_path) == _expected_records()


def test_mutual_tls_refuses_a_client_without_a_certificate(
    tmp_path: Path, certs: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    ck = _ck()
    tls = {
        "tls_cert": certs["server"],
        "tls_key": certs["server-key"],
        "tls_client_ca": certs["ca"],
    }
    with (
        caplog.at_level(logging.WARNING, logger="logstore.server"),
        _served(tmp_path, **tls) as address,
    ):
        errors = _expect_refused({"bootstrap.servers": address, **_ssl(certs)})
        assert {e.code() for e in errors} <= {
            ck.KafkaError._SSL,
            ck.KafkaError._TRANSPORT,
            ck.KafkaError._ALL_BROKERS_DOWN,
        }, errors
        _produce_consume({"bootstrap.servers": address, **_ssl(certs, client_cert=True)})
    assert _stored(tmp_path) == _expected_records()
    assert any(
        "TLS handshake failed" in r.getMessage() and "certificate" in r.getMessage().lower()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_sasl_right_password_produces_and_consumes(
    tmp_path: Path, users_file: str, mechanism: str
) -> None:
    with _served(tmp_path, sasl_users=users_file) as address:
        _produce_consume(
            {"bootstrap.servers": address, **_sasl(mechanism, "alice", "alice-secret")}
        )
    assert _stored(tmp_path) == _expected_records()


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
@pytest.mark.parametrize(("user", "password"), [("alice", "bob-secret"), ("mallory", "x")])
def test_sasl_wrong_password_or_unknown_user_is_an_authentication_failure(
    tmp_path: Path, users_file: str, mechanism: str, user: str, password: str
) -> None:
    ck = _ck()
    with _served(tmp_path, sasl_users=users_file) as address:
        errors = _expect_refused({"bootstrap.servers": address, **_sasl(mechanism, user, password)})
    assert errors[0].code() == ck.KafkaError._AUTHENTICATION, errors
    assert (
        f"SASL authentication error: Authentication failed with SASL mechanism {mechanism}: "
        "invalid user name or password" in errors[0].str()
    )
    assert _stored(tmp_path) == []


def test_sasl_over_tls(tmp_path: Path, certs: dict[str, str], users_file: str) -> None:
    options = {
        "tls_cert": certs["server"],
        "tls_key": certs["server-key"],
        "sasl_users": users_file,
    }
    with _served(tmp_path, **options) as address:
        settings = {
            "bootstrap.servers": address,
            **_sasl("SCRAM-SHA-256", "bob", "bob-secret", "SASL_SSL"),
            "ssl.ca.location": certs["ca"],
        }
        _produce_consume(settings)
    assert _stored(tmp_path) == _expected_records()


def test_kafka_python_scram_over_tls(
    tmp_path: Path, certs: dict[str, str], users_file: str
) -> None:
    kafka = _need("kafka")
    options = {
        "tls_cert": certs["server"],
        "tls_key": certs["server-key"],
        "sasl_users": users_file,
    }
    security = {
        "security_protocol": "SASL_SSL",
        "ssl_cafile": certs["ca"],
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "alice",
        "sasl_plain_password": "alice-secret",
    }
    with _served(tmp_path, **options) as address:
        producer = kafka.KafkaProducer(bootstrap_servers=address, acks="all", **security)
        for key, value in RECORDS:
            producer.send(TOPIC, key=key, value=value, partition=1)
        producer.flush(15)
        producer.close()
        consumer = kafka.KafkaConsumer(
            bootstrap_servers=address, consumer_timeout_ms=5000, **security
        )
        consumer.assign([kafka.TopicPartition(TOPIC, 1)])
        consumer.seek_to_beginning()
        got = [(m.offset, m.key, m.value) for _, m in zip(RECORDS, consumer, strict=False)]
        consumer.close()
    assert got == [(i, k, v) for i, (k, v) in enumerate(RECORDS)]
    assert _stored(tmp_path) == [(1, i, k, v) for i, (k, v) in enumerate(RECORDS)]


# ------------------------------------------------------------------ raw frames

_SIZE = struct.Struct(">i")


def _request(api_key: int, version: int, correlation: int, body: bytes) -> bytes:
    """A non-flexible request frame (header v1: key, version, correlation id, client id)."""
    header = struct.pack(">hhih", api_key, version, correlation, 4) + b"test"
    return _SIZE.pack(len(header) + len(body)) + header + body


def _answer(sock: socket.socket) -> bytes:
    """One response frame's body after its correlation id; ``b""`` if the server closed."""
    head = _recv(sock, 4)
    if not head:
        return b""
    (size,) = _SIZE.unpack(head)
    return _recv(sock, size)[4:]


def _recv(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            return out
        out += chunk
    return out


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _string(text: str) -> bytes:
    return struct.pack(">h", len(text)) + text.encode()


def test_sasl_listener_before_authentication(
    tmp_path: Path, users_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="logstore.server"),
        _served(tmp_path, sasl_users=users_file, sasl_mechanisms=["SCRAM-SHA-256"]) as address,
    ):
        port = int(address.rpartition(":")[2])
        # A mechanism not enabled: UNSUPPORTED_SASL_MECHANISM (33) with the enabled list, closed.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(_request(17, 1, 7, _string("PLAIN")))
            assert _answer(sock) == struct.pack(">hi", 33, 1) + _string("SCRAM-SHA-256")
            assert _closed(sock)
        # Metadata before authentication: closed without an answer.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(_request(3, 0, 8, struct.pack(">i", 0)))
            assert _closed(sock)
        # SaslAuthenticate v0 without a handshake: ILLEGAL_SASL_STATE (34), then closed.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(_request(36, 0, 9, struct.pack(">i", 3) + b"abc"))
            message = b"SaslAuthenticate before SaslHandshake"
            assert _answer(sock) == struct.pack(">h", 34) + _string(message.decode()) + bytes(4)
            assert _closed(sock)
        # A v0 handshake, then a raw SCRAM token (no Kafka header) that is malformed.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(_request(17, 0, 10, _string("SCRAM-SHA-256")))
            assert _answer(sock) == struct.pack(">hi", 0, 1) + _string("SCRAM-SHA-256")
            sock.sendall(_SIZE.pack(5) + b"n,,n=")
            assert _closed(sock)  # a malformed client-first: closed, no answer
        # A frame larger than the unauthenticated limit (512 KiB): closed.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(_SIZE.pack(600 << 10))
            assert _closed(sock)
    lines = [r.getMessage() for r in caplog.records]
    assert any("SASL mechanism 'PLAIN' not enabled (SCRAM-SHA-256)" in line for line in lines)
    assert any("API 3 before SASL authentication: connection closed" in line for line in lines)
    assert any("a frame of 614400 bytes (limit 524288)" in line for line in lines)


def test_v0_handshake_then_raw_plain_token(tmp_path: Path, users_file: str) -> None:
    with _served(tmp_path, sasl_users=users_file) as address:
        port = int(address.rpartition(":")[2])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(_request(17, 0, 1, _string("PLAIN")))
            assert _answer(sock) == struct.pack(">hi", 0, 2) + _string("PLAIN") + _string(
                "SCRAM-SHA-256"
            )
            token = b"\0alice\0alice-secret"
            sock.sendall(_SIZE.pack(len(token)) + token)
            assert _recv(sock, 4) == _SIZE.pack(0)
            # Authenticated: Metadata v0 for no topics answers (one broker, no topics).
            sock.sendall(_request(3, 0, 2, struct.pack(">i", 0)))
            body = _answer(sock)
            assert body[:4] == struct.pack(">i", 1)  # one broker
            # A second handshake after authentication: ILLEGAL_SASL_STATE, the connection stays.
            sock.sendall(_request(17, 1, 3, _string("PLAIN")))
            assert _answer(sock)[:2] == struct.pack(">h", 34)
        # SaslAuthenticate v0 with a wrong password: SASL_AUTHENTICATION_FAILED (58) and
        # the reason, after Kafka's 100 ms delay for a failed authentication; then closed.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(_request(17, 1, 1, _string("PLAIN")))
            assert _answer(sock)[:2] == struct.pack(">h", 0)
            token = b"\0alice\0wrong"
            started = time.monotonic()
            sock.sendall(_request(36, 0, 2, struct.pack(">i", len(token)) + token))
            message = (
                "Authentication failed with SASL mechanism PLAIN: invalid user name or password"
            )
            assert _answer(sock) == struct.pack(">h", 58) + _string(message) + bytes(4)
            assert time.monotonic() - started >= 0.1
            assert _closed(sock)


def test_sasl_requests_on_a_listener_without_sasl(tmp_path: Path) -> None:
    with _served(tmp_path) as address:
        port = int(address.rpartition(":")[2])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(_request(17, 1, 1, _string("PLAIN")))
            assert _answer(sock) == struct.pack(">hi", 33, 0)  # no mechanism enabled
            sock.sendall(_request(36, 0, 2, struct.pack(">i", 0)))
            assert _answer(sock) == struct.pack(">h", 34) + _string("SASL is not enabled") + bytes(
                4
            )
            # The connection is still served.
            sock.sendall(_request(3, 0, 3, struct.pack(">i", 0)))
            assert _answer(sock)[:4] == struct.pack(">i", 1)


def test_plaintext_client_on_a_tls_listener_fails_alone(
    tmp_path: Path, certs: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    ck = _ck()
    tls = {"tls_cert": certs["server"], "tls_key": certs["server-key"]}
    with (
        caplog.at_level(logging.WARNING, logger="logstore.server"),
        _served(tmp_path, **tls) as address,
    ):
        settings = {"bootstrap.servers": address, **_ssl(certs)}
        producer = ck.Producer({**settings, "acks": "all"})
        producer.produce(TOPIC, key=b"before", value=b"1", partition=1)
        assert producer.flush(15) == 0
        port = int(address.rpartition(":")[2])
        # A Kafka request in the clear where a TLS ClientHello is due.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(_request(18, 0, 1, b""))
            assert _closed(sock)
        errors = _expect_refused({"bootstrap.servers": address})  # librdkafka in plaintext
        assert errors
        # The TLS client's connection was not disturbed.
        producer.produce(TOPIC, key=b"after", value=b"2", partition=1)
        assert producer.flush(15) == 0
    assert _stored(tmp_path) == [(1, 0, b"before", b"1"), (1, 1, b"after", b"2")]
    assert sum("TLS handshake failed" in r.getMessage() for r in caplog.records) >= 2


def test_tls_settings_are_checked_before_the_root_is_opened(
    tmp_path: Path, certs: dict[str, str]
) -> None:
    _need("kio")
    from logstore.server.tls import TLSConfigError

    missing = str(tmp_path / "missing.pem")
    with pytest.raises(
        TLSConfigError, match=f"^TLS certificate {re.escape(missing)}: no such file$"
    ):
        logstore.serve(tmp_path / "root", listen="127.0.0.1:0", tls_cert=missing)
    with pytest.raises(TLSConfigError, match="cannot be used"):
        # A key that is not the certificate's.
        logstore.serve(
            tmp_path / "root",
            listen="127.0.0.1:0",
            tls_cert=certs["server"],
            tls_key=certs["client-key"],
        )
    assert not (tmp_path / "root").exists()


# ------------------------------------------------------------------ the command line


def _serve(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "logstore", "serve", str(root), *args],
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_secured_listener_needs_no_insecure(
    tmp_path: Path, certs: dict[str, str], users_file: str
) -> None:
    _need("kio")
    for extra in (
        ["--tls-cert", certs["server"], "--tls-key", certs["server-key"]],
        ["--sasl-users", users_file, "--sasl-mechanisms", "SCRAM-SHA-256"],
    ):
        proc = _serve(tmp_path, "--listen", "0.0.0.0:0", *extra)
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            assert re.fullmatch(r"listening on 0\.0\.0\.0:\d+\n", line), line
        finally:
            proc.send_signal(signal.SIGTERM)
            _, rest = proc.communicate(timeout=30)
        assert (proc.returncode, rest) == (0, "")


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (
            ["--tls-cert", "{tmp}/nope.pem"],
            2,
            "Invalid value for '--tls-cert': File '{tmp}/nope.pem' does not exist.",
        ),
        (
            ["--tls-cert", "{ca}", "--tls-key", "{client_key}"],
            1,
            "TLS certificate {ca} with key {client_key}: cannot be used: key values mismatch",
        ),
        (
            ["--tls-key", "{client_key}"],
            1,
            "a TLS key or client CA needs a TLS certificate (tls_cert, --tls-cert)",
        ),
        (
            ["--sasl-users", "{bad_users}"],
            1,
            "{bad_users}:1: expected NAME SCRAM-SHA-256 FIELD=VALUE..., got 'alice'",
        ),
        (
            ["--sasl-mechanisms", "GSSAPI", "--sasl-users", "{users}"],
            1,
            "SASL mechanisms ['GSSAPI']: choose from PLAIN, SCRAM-SHA-256",
        ),
    ],
)
def test_cli_bad_security_settings_are_one_line(
    tmp_path: Path,
    certs: dict[str, str],
    users_file: str,
    args: list[str],
    status: int,
    message: str,
) -> None:
    _need("kio")
    (tmp_path / "bad-users").write_text("alice\n")
    values = {
        "tmp": str(tmp_path),
        "ca": certs["ca"],
        "client_key": certs["client-key"],
        "bad_users": str(tmp_path / "bad-users"),
        "users": users_file,
    }
    args = [a.format(**values) for a in args]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "logstore",
            "serve",
            str(tmp_path / "root"),
            "--listen",
            "127.0.0.1:0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stdout) == (status, "")
    # One line; OpenSSL's own wording (key values mismatch) may differ between versions.
    assert done.stderr.startswith(f"logstore: {message.format(**values)}"), done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.endswith("\n"), done.stderr
    assert not (tmp_path / "root").exists()
