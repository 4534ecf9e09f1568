"""HTTPS per domain at the front proxy: certificates from the signed bundle in Redis presented by
SNI without a restart, the platform certificate as fallback, forged or foreign bundles refused,
ACME challenges answered, plain HTTP redirected for the apps that force HTTPS. Real Redis, a
real `python -m proxy`, real TLS handshakes."""

from __future__ import annotations

import json
import socket
import ssl
from datetime import UTC, datetime, timedelta

import pytest
import redis
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from proxy.tls import make_local_ca
from routing.certs import CERTS, CHALLENGES, CertBundle, CertEntry, Challenges, publish_document
from routing.keys import generate_pair
from routing.sealed import public_key_from, seal
from routing.signing import public_key_text
from tests.proxy.support import connect, exchange, read_response
from tests.proxy.test_front import PUBLISHER, ProxyProcess
from tests.support import free_port, wait_until

PREFIX = "hosting:"
APPS = "apps.test"
PANEL = "panel.test"


class Fleet:
    """Keys on disk as one machine keeps them, a CA for app certificates, and publishers."""

    def __init__(self, tmp_path, redis_url: str) -> None:
        self.var = tmp_path / "var"
        self.signing = generate_pair(self.var / "keys")
        self.sealing = public_key_from(self.var, None)  # makes the certificate-keys pair
        self.client = redis.Redis.from_url(redis_url)
        self.platform = make_local_ca(tmp_path / "platform", PANEL, APPS)
        self.ca = trustme.CA(organization_name="app owners' CA")
        self.force: set[str] = set()
        self.entries: dict[str, CertEntry] = {}

    def entry(self, domain: str, *, sealed_to=None, not_after: datetime | None = None):
        leaf = self.ca.issue_cert(domain, not_after=not_after) if not_after else None
        leaf = leaf or self.ca.issue_cert(domain)
        chain = "".join(blob.bytes().decode() for blob in leaf.cert_chain_pems)
        cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
        key = seal(sealed_to or self.sealing, leaf.private_key_pem.bytes(), domain)
        return CertEntry(
            domain=domain,
            chain=chain,
            key=key,
            not_after=cert.not_valid_after_utc.isoformat(),
            serial=format(cert.serial_number, "x"),
        )

    def publish(self, signing_key: Ed25519PrivateKey | None = None) -> int:
        body = CertBundle.body(list(self.entries.values()), sorted(self.force))
        version = publish_document(
            self.client, CERTS, body, PREFIX, signing_key=signing_key or self.signing
        )
        assert version is not None
        return version

    def publish_challenges(self, tokens: dict[str, str]) -> int:
        version = publish_document(
            self.client, CHALLENGES, Challenges.body(tokens), PREFIX, signing_key=self.signing
        )
        assert version is not None
        return version


@pytest.fixture
def fleet(tmp_path, redis_server):
    f = Fleet(tmp_path, redis_server.url)
    yield f
    f.client.close()


@pytest.fixture
def proxy(fleet, redis_server, tmp_path):
    tls_port = free_port()
    proc = ProxyProcess(
        redis_server.url,
        str(tmp_path / "routes.json"),
        "--tls-listen", f"127.0.0.1:{tls_port}",
        "--tls-cert", str(fleet.platform["cert"]),
        "--tls-key", str(fleet.platform["key"]),
        "--var-dir", str(fleet.var),
        "--tls-state-file", str(tmp_path / "tls.json"),
        # The route tables' publisher and the fleet's, whose key signs the certificate bundle.
        "--trusted-keys",
        f"{public_key_text(PUBLISHER.public_key())},{public_key_text(fleet.signing.public_key())}",
    )  # fmt: skip
    proc.tls_port = tls_port
    proc.start(ready=False)
    yield proc
    proc.stop()


def presented(port: int, sni: str) -> x509.Certificate:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der)


def names(cert: x509.Certificate) -> list[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return ext.value.get_values_for_type(x509.DNSName)


def held_version(proxy, kind: str) -> int | None:
    status, body = proxy.admin_get("/tls")
    if status != 200:
        return None
    return json.loads(body)[f"{kind}_version"]


def wait_for_bundle(proxy, version: int) -> dict:
    wait_until(lambda: (held_version(proxy, "bundle") or 0) >= version, 10, what="bundle held")
    return json.loads(proxy.admin_get("/tls")[1])


def test_it_presents_an_app_certificate_by_sni_and_the_platform_one_otherwise(fleet, proxy):
    fleet.entries["shop.example"] = fleet.entry("shop.example")
    wait_for_bundle(proxy, fleet.publish())

    assert names(presented(proxy.tls_port, "shop.example")) == ["shop.example"]
    assert names(presented(proxy.tls_port, "SHOP.example")) == ["shop.example"]
    platform = names(presented(proxy.tls_port, f"alice.{APPS}"))
    assert f"*.{APPS}" in platform
    assert f"*.{APPS}" in names(presented(proxy.tls_port, "nobody.example"))


def test_a_new_certificate_is_served_without_a_restart(fleet, proxy):
    fleet.entries["shop.example"] = fleet.entry("shop.example")
    wait_for_bundle(proxy, fleet.publish())
    first = presented(proxy.tls_port, "shop.example").serial_number

    fleet.entries["shop.example"] = fleet.entry("shop.example")
    held = wait_for_bundle(proxy, fleet.publish())

    second = presented(proxy.tls_port, "shop.example").serial_number
    assert second != first
    assert held["certificates"]["shop.example"]["serial"] == format(second, "x")
    assert proxy.process.poll() is None


def test_a_bundle_signed_by_another_key_is_refused_and_the_old_one_stays(fleet, proxy):
    fleet.entries["shop.example"] = fleet.entry("shop.example")
    version = fleet.publish()
    wait_for_bundle(proxy, version)
    serial = presented(proxy.tls_port, "shop.example").serial_number

    fleet.entries["shop.example"] = fleet.entry("shop.example")
    publish_document(
        fleet.client, CERTS,
        CertBundle.body(list(fleet.entries.values()), []), PREFIX,
        signing_key=Ed25519PrivateKey.generate(),
    )  # fmt: skip

    counted = (
        'proxy_signed_documents_refused_total{worker="0",document="tls",reason="bad_signature"} 1'
    )
    wait_until(lambda: counted in proxy.admin_get("/metrics")[1], 10, what="forgery counted")
    assert presented(proxy.tls_port, "shop.example").serial_number == serial
    assert held_version(proxy, "bundle") == version


def test_an_entry_sealed_to_another_proxy_key_is_not_installed_and_the_rest_is(fleet, proxy):
    other = X25519PrivateKey.generate().public_key()
    fleet.entries["shop.example"] = fleet.entry("shop.example")
    fleet.entries["stolen.example"] = fleet.entry("stolen.example", sealed_to=other)
    held = wait_for_bundle(proxy, fleet.publish())

    assert sorted(held["certificates"]) == ["shop.example"]
    assert "does not open" in held["failed"]["stolen.example"]
    assert f"*.{APPS}" in names(presented(proxy.tls_port, "stolen.example"))


def test_a_restarted_proxy_presents_the_bundle_from_its_state_file_while_redis_is_down(
    fleet, proxy, redis_server
):
    fleet.entries["shop.example"] = fleet.entry("shop.example")
    wait_for_bundle(proxy, fleet.publish())
    serial = presented(proxy.tls_port, "shop.example").serial_number
    proxy.stop()
    redis_server.stop()

    proxy.start(ready=False)
    wait_until(lambda: held_version(proxy, "bundle"), 10, what="bundle from the state file")
    assert presented(proxy.tls_port, "shop.example").serial_number == serial


def test_metrics_carry_days_to_the_nearest_expiry(fleet, proxy):
    soon = datetime.now(UTC) + timedelta(days=10, hours=1)
    fleet.entries["soon.example"] = fleet.entry("soon.example", not_after=soon)
    fleet.entries["later.example"] = fleet.entry("later.example")
    wait_for_bundle(proxy, fleet.publish())

    metrics = proxy.admin_get("/metrics")[1]
    line = next(x for x in metrics.splitlines() if x.startswith("proxy_tls_nearest_expiry_days"))
    assert 10.0 <= float(line.split()[-1]) < 10.1
    assert 'proxy_tls_certificates{worker="0"} 2' in metrics


def test_the_heartbeat_counts_the_certificates_held_and_the_nearest_expiry(fleet, proxy):
    from routing.fleet import read_fleet

    def reported():
        members = read_fleet(fleet.client, PREFIX).of("proxy")
        return members[0] if members and members[0].certificates else None

    soon = datetime.now(UTC) + timedelta(days=10, hours=1)
    fleet.entries["soon.example"] = fleet.entry("soon.example", not_after=soon)
    fleet.entries["later.example"] = fleet.entry("later.example")
    wait_for_bundle(proxy, fleet.publish())
    member = wait_until(reported, 10, what="a heartbeat with the certificates")
    assert member.certificates == 2
    # Certificates carry whole seconds: the nearest expiry is soon.example's.
    assert member.certs_not_after == float(int(soon.timestamp()))

    del fleet.entries["soon.example"]
    wait_for_bundle(proxy, fleet.publish())
    member = wait_until(
        lambda: (m := reported()) and m.certificates == 1 and m, 10, what="one certificate"
    )
    assert member.certs_not_after > soon.timestamp() + 86_400


def test_plain_http_of_a_forced_app_is_redirected_301_for_get_and_308_otherwise(fleet, proxy):
    fleet.force = {"shop.example"}
    wait_for_bundle(proxy, fleet.publish())

    got = exchange(proxy.port, b"GET /cart?x=1 HTTP/1.1\r\nHost: Shop.Example:80\r\n\r\n")
    assert got.status == 301
    assert got.header("Location") == f"https://shop.example:{proxy.tls_port}/cart?x=1"
    with connect(proxy.port) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: shop.example\r\n\r\n")
        assert read_response(sock, head_request=True).status == 301
    post = exchange(
        proxy.port, b"POST /pay HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 2\r\n\r\nhi"
    )
    assert post.status == 308
    assert post.header("Location") == f"https://shop.example:{proxy.tls_port}/pay"
    # Another app is not redirected (no route table yet: the proxy's own 503).
    assert exchange(proxy.port, b"GET / HTTP/1.1\r\nHost: other.example\r\n\r\n").status == 503


def test_https_requests_of_a_forced_app_are_not_redirected(fleet, proxy):
    fleet.force = {"shop.example"}
    fleet.entries["shop.example"] = fleet.entry("shop.example")
    wait_for_bundle(proxy, fleet.publish())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", proxy.tls_port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="shop.example") as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n")
        first = tls.recv(100)
    assert first.startswith(b"HTTP/1.1 503")


def test_acme_challenges_are_answered_on_plain_http_for_any_host(fleet, proxy):
    token = "tok-" + "A" * 40
    answer = f"{token}.{'t' * 43}"
    version = fleet.publish_challenges({token: answer})
    wait_until(lambda: (held_version(proxy, "challenges") or 0) >= version, 10, what="tokens")

    path = f"/.well-known/acme-challenge/{token}"
    got = exchange(proxy.port, f"GET {path} HTTP/1.1\r\nHost: shop.example\r\n\r\n".encode())
    assert (got.status, got.body) == (200, answer.encode())
    missing = exchange(
        proxy.port,
        b"GET /.well-known/acme-challenge/unknown HTTP/1.1\r\nHost: shop.example\r\n\r\n",
    )
    assert missing.status == 404


def test_challenges_are_answered_even_for_an_app_that_forces_https(fleet, proxy):
    fleet.force = {"shop.example"}
    wait_for_bundle(proxy, fleet.publish())
    token = "B" * 43
    version = fleet.publish_challenges({token: f"{token}.{'u' * 43}"})
    wait_until(lambda: (held_version(proxy, "challenges") or 0) >= version, 10, what="tokens")
    got = exchange(
        proxy.port,
        f"GET /.well-known/acme-challenge/{token} HTTP/1.1\r\nHost: shop.example\r\n\r\n".encode(),
    )
    assert got.status == 200
