"""Tests of bridge.adapters.tls against a real second RabbitMQ node with a TLS listener that requires client
certificates (mutual TLS) and offers EXTERNAL authentication.

The node (dtntls@localhost, AMQP 5681, AMQPS 5682, distribution 25681) is started once per session from
generated certificates and configuration under /tmp/dtn-bridge-tls-broker, with its own Erlang cookie, and stopped
at the end. A lock file serialises test sessions running at the same time on the host; a node left over by a killed
session is stopped first. If the node does not start, the tests FAIL with its log tail (never skip).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
import secrets
import ssl
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bridge.adapters.rabbitmq import RabbitConsumer, RabbitPublisher
from bridge.adapters.rabbitmq.topology import Topology
from bridge.adapters.tls import BrokerContext, broker_connection_options, ssl_context_for
from bridge.config import BrokerConfig, TlsConfig
from bridge.errors import BrokerUnavailable, ConfigError
from bridge.ports import OutgoingMessage
from tests.helpers import wait_until
from tests.rabbit_nodes import LocalNode

NODE = "dtntls@localhost"
AMQP_PORT = 5681
AMQPS_PORT = 5682
DIST_PORT = 25681
CLIENT_CN = "dtn-bridge-test"
BASE = Path(tempfile.gettempdir()) / "dtn-bridge-tls-broker"
LOCK_TIMEOUT = 300.0


# ---------------------------------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Pki:
    """Files of the test PKI: a CA, the broker's certificate, a client certificate, and a rogue CA + client."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    rogue_cert: Path
    rogue_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dtn-bridge tests"),
        ]
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name = issuer[0].subject if issuer else _name(subject)
    signer = issuer[1] if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False
        )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
        )
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def _write(
    folder: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None
) -> tuple[Path, Path | None]:
    cert_path = folder / f"{name}.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is None:
        return cert_path, None
    key_path = folder / f"{name}.key"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def make_pki(folder: Path) -> Pki:
    folder.mkdir(mode=0o700, parents=True)
    ca_key = _key()
    ca = _cert("dtn-bridge test CA", ca_key, None, ca=True)
    server_key = _key()
    server = _cert("localhost", server_key, (ca, ca_key), server=True)
    client_key = _key()
    client = _cert(CLIENT_CN, client_key, (ca, ca_key))
    other_key = _key()
    other = _cert("some other CA", other_key, None, ca=True)
    rogue_key = _key()
    rogue = _cert(CLIENT_CN, rogue_key, (other, other_key))
    ca_path, _ = _write(folder, "ca", ca)
    server_cert, server_key_path = _write(folder, "server", server, server_key)
    client_cert, client_key_path = _write(folder, "client", client, client_key)
    other_path, _ = _write(folder, "other-ca", other)
    rogue_cert, rogue_key_path = _write(folder, "rogue", rogue, rogue_key)
    assert server_key_path and client_key_path and rogue_key_path
    return Pki(
        ca_path,
        server_cert,
        server_key_path,
        client_cert,
        client_key_path,
        other_path,
        rogue_cert,
        rogue_key_path,
    )


# ------------------------------------------------------------------------------------------------------ the node


class TlsNode(LocalNode):
    """The TLS node: mutual TLS and EXTERNAL on its AMQPS listener, and a client user without a password."""

    def __init__(self, base: Path) -> None:
        super().__init__(NODE, base, amqp_port=AMQP_PORT, dist_port=DIST_PORT, plugins="[rabbitmq_auth_mechanism_ssl]",
                         other_ports=(AMQPS_PORT,))

    def configure_tls(self, pki: Pki) -> None:
        self.configure([
            f"listeners.ssl.default = 127.0.0.1:{AMQPS_PORT}",
            f"ssl_options.cacertfile = {pki.ca}",
            f"ssl_options.certfile = {pki.server_cert}",
            f"ssl_options.keyfile = {pki.server_key}",
            "ssl_options.verify = verify_peer",
            "ssl_options.fail_if_no_peer_cert = true",
            "ssl_options.versions.1 = tlsv1.3",
            "ssl_options.versions.2 = tlsv1.2",
            "auth_mechanisms.1 = EXTERNAL",
            "auth_mechanisms.2 = PLAIN",
            "ssl_cert_login_from = common_name",
        ])

    def start(self) -> None:
        super().start()
        self.ctl("add_user", CLIENT_CN, secrets.token_urlsafe(16))
        self.ctl("clear_password", CLIENT_CN)  # EXTERNAL only: no password works for this user
        self.ctl("set_permissions", "-p", "/", CLIENT_CN, ".*", ".*", ".*")


@pytest.fixture(scope="session")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    """The running TLS node and the PKI it trusts; one per session, serialised across sessions by a lock."""
    BASE.mkdir(mode=0o700, exist_ok=True)
    lock = (BASE / "lock").open("w")

    def locked() -> bool:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    wait_until(locked, LOCK_TIMEOUT, f"another test session held {BASE / 'lock'}", interval=0.5)
    node = TlsNode(BASE)
    try:
        node.prepare()
        pki = make_pki(node.run / "pki")
        node.configure_tls(pki)
        try:
            node.start()
        except BaseException:
            node.stop()
            raise
        try:
            yield pki
        finally:
            node.stop()
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


# ---------------------------------------------------------------------------------------------------------- tests

URL = f"amqps://guest:guest@127.0.0.1:{AMQPS_PORT}/"
EXTERNAL_URL = f"amqps://127.0.0.1:{AMQPS_PORT}/"


def mtls(pki: Pki, **changes: object) -> TlsConfig:
    values: dict[str, object] = {"ca_file": pki.ca, "cert_file": pki.client_cert, "key_file": pki.client_key}
    values.update(changes)
    return TlsConfig(**values)  # type: ignore[arg-type]


def round_trip(urls: list[str], options: dict[str, object]) -> bytes:
    """Publish one message over TLS and read it back over TLS; returns the body received."""
    topology = Topology().with_suffix(f".tls-{uuid.uuid4().hex[:8]}")
    body = f"hello over TLS {uuid.uuid4()}".encode()
    with RabbitPublisher(urls, topology=topology, connect_timeout=10, **options) as publisher:  # type: ignore[arg-type]
        result = publisher.publish_all(
            [OutgoingMessage("outbound.test", body, str(uuid.uuid4()))], timeout=20
        )
        assert result.confirmed == 1
    with RabbitConsumer(
        urls, queue=topology.outbound_queue or "", topology=topology, connect_timeout=10, **options
    ) as consumer:  # type: ignore[arg-type]
        delivery = consumer.get(timeout=10)
        assert delivery is not None
        consumer.ack(delivery)
        return delivery.body


class TestAgainstBroker:
    def test_mutual_tls_publish_and_consume(self, tls_node: Pki) -> None:
        """Publisher and consumer reach the broker over amqps:// with a verified broker and a client cert."""
        context = ssl_context_for(mtls(tls_node))
        assert round_trip([URL], {"ssl_options": context}).startswith(b"hello over TLS")

    def test_external_auth_uses_the_certificate_cn(self, tls_node: Pki) -> None:
        """With external_auth the URL carries no credentials: the broker logs in the certificate's CN."""
        options = broker_connection_options(
            BrokerConfig(urls=(EXTERNAL_URL,), tls=mtls(tls_node, external_auth=True))
        )
        assert options.get("external_auth") is True
        assert round_trip([EXTERNAL_URL], dict(options)).startswith(b"hello over TLS")

    def test_external_user_is_the_cn(self, tls_node: Pki) -> None:
        """The broker lists the EXTERNAL connection under the certificate's CN."""
        options = broker_connection_options(
            BrokerConfig(urls=(EXTERNAL_URL,), tls=mtls(tls_node, external_auth=True))
        )
        publisher = RabbitPublisher(
            [EXTERNAL_URL],
            topology=Topology().with_suffix(f".tls-{uuid.uuid4().hex[:8]}"),
            client_name="dtn-bridge-tls-external",
            **options,
        )  # type: ignore[arg-type]
        rows: list[str] = []

        def listed() -> bool:
            listing = TlsNode(BASE).ctl(
                "list_connections", "client_properties", "user", "auth_mechanism", "--no-table-headers"
            )
            rows[:] = [line for line in listing.stdout.splitlines() if "dtn-bridge-tls-external" in line]
            return bool(rows)

        with publisher:
            wait_until(listed, 10, "the broker lists no dtn-bridge-tls-external connection", interval=0.5)
        assert CLIENT_CN in rows[0] and "EXTERNAL" in rows[0], rows

    def test_client_without_certificate_is_refused(self, tls_node: Pki) -> None:
        """fail_if_no_peer_cert: a client that verifies the broker but has no certificate gets no connection."""
        context = ssl_context_for(TlsConfig(ca_file=tls_node.ca))
        publisher = RabbitPublisher([URL], connect_timeout=10, ssl_options=context)
        # The text varies: with TLS 1.3 the broker's alert (CERTIFICATE_REQUIRED, UNKNOWN_CA) may arrive after
        # the client finished its side of the handshake, and show as a lost stream instead.
        with pytest.raises(BrokerUnavailable, match="cannot connect to 127.0.0.1:5682"):
            publisher.connect()
        publisher.close()

    def test_client_not_trusting_the_ca_is_refused(self, tls_node: Pki) -> None:
        """A client that trusts another CA refuses the broker's certificate (no silent downgrade)."""
        context = ssl_context_for(mtls(tls_node, ca_file=tls_node.other_ca))
        publisher = RabbitPublisher([URL], connect_timeout=10, ssl_options=context)
        with pytest.raises(BrokerUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            publisher.connect()
        publisher.close()

    def test_client_certificate_from_another_ca_is_refused(self, tls_node: Pki) -> None:
        """A certificate with the right CN but signed by an unknown CA is refused by the broker."""
        context = ssl_context_for(
            TlsConfig(
                ca_file=tls_node.ca,
                cert_file=tls_node.rogue_cert,
                key_file=tls_node.rogue_key,
                external_auth=True,
            )
        )
        publisher = RabbitPublisher(
            [EXTERNAL_URL], connect_timeout=10, ssl_options=context, external_auth=True
        )
        # The text varies: with TLS 1.3 the broker's alert (CERTIFICATE_REQUIRED, UNKNOWN_CA) may arrive after
        # the client finished its side of the handshake, and show as a lost stream instead.
        with pytest.raises(BrokerUnavailable, match="cannot connect to 127.0.0.1:5682"):
            publisher.connect()
        publisher.close()

    def test_hostname_is_checked(self, tls_node: Pki) -> None:
        """The broker's certificate names localhost and 127.0.0.1: pinning another name fails verification."""
        context = ssl_context_for(mtls(tls_node, server_hostname="broker.example.org"))
        publisher = RabbitPublisher([URL], connect_timeout=10, ssl_options=context)
        with pytest.raises(BrokerUnavailable, match="(?i)hostname mismatch|not valid for"):
            publisher.connect()
        publisher.close()

    def test_server_hostname_override(self, tls_node: Pki) -> None:
        """Dialling 127.0.0.1 while verifying the name `localhost` works (server_hostname)."""
        context = ssl_context_for(mtls(tls_node, server_hostname="localhost"))
        with RabbitPublisher(
            [URL],
            connect_timeout=10,
            ssl_options=context,
            topology=Topology().with_suffix(f".tls-{uuid.uuid4().hex[:8]}"),
        ) as publisher:
            assert publisher.connected

    def test_ssl_options_in_the_url_are_refused(self, tls_node: Pki) -> None:
        """Issue 14: pika builds a context of its own from a URL's ssl_options, unverified with protocol 2
        (PROTOCOL_TLS: CERT_NONE), and connected here while trusting another CA. Now a ConfigError naming the URL."""
        options = {"protocol": 2, "ca_certs": str(tls_node.other_ca), "certfile": str(tls_node.client_cert),
                   "keyfile": str(tls_node.client_key)}
        url = f"{URL}?ssl_options={quote(repr(options))}"
        with pytest.raises(ConfigError, match=r"broker\.urls\[0\].*ssl_options"):
            RabbitPublisher([url], connect_timeout=10, topology=Topology().with_suffix(".tls-refused")).connect()
        with pytest.raises(ConfigError, match=r"broker\.urls\[0\].*ssl_options"):  # beside broker.tls too
            RabbitPublisher([url], connect_timeout=10, ssl_options=ssl_context_for(mtls(tls_node)))

    def test_amqps_without_tls_settings_verifies_the_broker(self, tls_node: Pki) -> None:
        """No broker.tls and no ssl_options: an amqps:// URL still verifies the broker (against the system CAs,
        which lack the test CA), so refusing ssl_options leaves no unverified way in."""
        publisher = RabbitPublisher([URL], connect_timeout=10)
        with pytest.raises(BrokerUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            publisher.connect()
        publisher.close()

    def test_external_user_without_certificate_cannot_use_password(self, tls_node: Pki) -> None:
        """The certificate user has no password: PLAIN login as that user is refused even over mutual TLS."""
        context = ssl_context_for(mtls(tls_node))
        publisher = RabbitPublisher(
            [f"amqps://{CLIENT_CN}:guess@127.0.0.1:{AMQPS_PORT}/"], connect_timeout=10, ssl_options=context
        )
        with pytest.raises(BrokerUnavailable, match="(?i)ACCESS_REFUSED|authentication"):
            publisher.connect()
        publisher.close()


# --------------------------------------------------------------------------------------- context (no broker needed)


class TestContext:
    def test_defaults_verify_with_system_cas(self) -> None:
        context = ssl_context_for(TlsConfig())
        assert isinstance(context, BrokerContext) and isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
        assert (
            context.cert_store_stats()["x509_ca"] > 0 or context.get_ca_certs() == []
        )  # system store may be empty
        assert context.pinned_hostname is None

    def test_verify_false_disables_checks(self) -> None:
        context = ssl_context_for(TlsConfig(verify=False))
        assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname

    def test_ca_file_loaded(self, tmp_path: Path) -> None:
        pki = make_pki(tmp_path / "pki")
        context = ssl_context_for(TlsConfig(ca_file=pki.ca, server_hostname="broker.internal"))
        assert [c["subject"] for c in context.get_ca_certs()] == [
            ((("commonName", "dtn-bridge test CA"),), (("organizationName", "dtn-bridge tests"),))
        ]
        assert context.pinned_hostname == "broker.internal"

    def test_missing_ca_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"broker\.tls\.ca_file.*no such file"):
            ssl_context_for(TlsConfig(ca_file=tmp_path / "none.pem"))

    def test_garbage_ca_file(self, tmp_path: Path) -> None:
        bad = tmp_path / "bad.pem"
        bad.write_text("not a certificate")
        with pytest.raises(ConfigError, match=r"broker\.tls\.ca_file"):
            ssl_context_for(TlsConfig(ca_file=bad))

    def test_key_readable_by_others_is_refused(self, tmp_path: Path) -> None:
        pki = make_pki(tmp_path / "pki")
        pki.client_key.chmod(0o644)
        with pytest.raises(ConfigError, match=r"broker\.tls\.key_file.*mode 0644"):
            ssl_context_for(mtls(pki))

    def test_mismatched_key_is_refused(self, tmp_path: Path) -> None:
        pki = make_pki(tmp_path / "pki")
        with pytest.raises(ConfigError, match=r"broker\.tls\.cert_file"):
            ssl_context_for(mtls(pki, key_file=pki.rogue_key))

    def test_external_auth_needs_certificate(self) -> None:
        with pytest.raises(ConfigError, match="external_auth"):
            ssl_context_for(TlsConfig(external_auth=True))

    def test_connection_options(self, tmp_path: Path) -> None:
        pki = make_pki(tmp_path / "pki")
        assert broker_connection_options(BrokerConfig()) == {}
        options = broker_connection_options(BrokerConfig(tls=mtls(pki)))
        assert set(options) == {"ssl_options"}
        options = broker_connection_options(BrokerConfig(tls=mtls(pki, external_auth=True)))
        assert options["external_auth"] is True and isinstance(options["ssl_options"], BrokerContext)

    def test_tls_context_with_amqp_url_is_refused(self) -> None:
        """A TLS context with an amqp:// URL is a configuration error, never a silent plain connection."""
        with pytest.raises(ConfigError, match="amqps://"):
            RabbitPublisher(
                [f"amqp://guest:guest@127.0.0.1:{AMQP_PORT}/"], ssl_options=ssl_context_for(TlsConfig())
            )

    def test_external_auth_without_tls_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="EXTERNAL"):
            RabbitPublisher([f"amqp://127.0.0.1:{AMQP_PORT}/"], external_auth=True)
