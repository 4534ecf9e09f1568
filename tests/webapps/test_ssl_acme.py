"""Automatic HTTPS against a real ACME server (Debian's pebble, with pebble-challtestsrv as its
DNS): ``POST .../ssl/ {"cert_type": "letsencrypt-auto-renew"}``, the HTTP-01 challenge answered
by real proxies (`python -m proxy`) from the signed challenge document, the certificate served
by SNI, renewals, and each fault of the issue."""

from __future__ import annotations

import itertools
import socket
import ssl
import time
from datetime import timedelta

import pytest
from cryptography import x509
from django.conf import settings
from django.utils import timezone

from panel.accounts.models import AuditEvent
from routing.keys import signing_key_from
from routing.signing import public_key_text
from scripts.pebble import Pebble, binaries
from tests.conftest import CLI
from tests.proxy.test_front import ProxyProcess
from tests.support import free_port, wait_until
from webapps import tls
from webapps.actions import do_create_webapp
from webapps.models import AcmeChallenge, Certificate

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(binaries() is None, reason="pebble is not installed (make pebble)"),
]
DOMAIN = "ironhand.example.com"
AUTO = {"cert_type": "letsencrypt-auto-renew"}


class Proxy(ProxyProcess):
    """A front proxy on ``address``:``port`` (plain) with a TLS port, reading the panel's Redis
    prefix and the machine's keys under VAR_DIR."""

    def __init__(self, tmp_path, name: str, address: str, port: int) -> None:
        super().__init__(settings.REDIS_URL, str(tmp_path / f"{name}-routes.json"))
        self.port = port
        self.tls_port = free_port()
        self.args[1] = f"{address}:{port}"
        self.args += [
            "--redis-prefix", settings.REDIS_PREFIX,
            "--var-dir", str(settings.VAR_DIR),
            "--tls-listen", f"127.0.0.1:{self.tls_port}",
            "--tls-cert", str(tmp_path / "platform" / "cert.pem"),
            "--tls-key", str(tmp_path / "platform" / "key.pem"),
            "--tls-state-file", str(tmp_path / f"{name}-tls.json"),
            # The machine's key under VAR_DIR signs the panel's certificates and challenges.
            "--trusted-keys", public_key_text(signing_key_from(settings.VAR_DIR, "").public_key()),
        ]  # fmt: skip

    def presented(self, sni: str) -> x509.Certificate:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", self.tls_port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname=sni) as conn,
        ):
            return x509.load_der_x509_certificate(conn.getpeercert(binary_form=True))

    def serves(self, sni: str, serial: str) -> bool:
        return format(self.presented(sni).serial_number, "x") == serial


@pytest.fixture
def acme_settings(settings, tmp_path):
    from proxy.tls import make_local_ca

    settings.VAR_DIR = tmp_path / "var"
    settings.ROUTES_SIGNING_KEY_FILE = ""
    settings.TLS_KEYS_PUBLIC = ""
    settings.ACME_ACCOUNT_KEY_FILE = tmp_path / "var" / "keys" / "acme-account.key"
    settings.ACME_RETRY_SECONDS = 600
    settings.ACME_RENEW_DAYS_BEFORE = 30
    settings.ACME_ORDER_TIMEOUT = 30
    make_local_ca(tmp_path / "platform", settings.PANEL_HOST, settings.APPS_DOMAIN)
    return settings


@pytest.fixture
def proxies(acme_settings, tmp_path):
    """Two proxies on the same plain port of two loopback addresses: DNS decides which one the
    ACME server reaches."""
    port = free_port()
    started = [Proxy(tmp_path, "p1", "127.0.0.1", port), Proxy(tmp_path, "p2", "127.0.0.2", port)]
    for proxy in started:
        proxy.start(ready=False)
    yield started
    for proxy in started:
        proxy.stop()


@pytest.fixture
def pebble(acme_settings, proxies, tmp_path):
    server = Pebble(tmp_path / "pebble", http_port=proxies[0].port).start()
    acme_settings.ACME_DIRECTORY_URL = server.directory_url
    acme_settings.ACME_CA_BUNDLE = str(server.ca_file)
    yield server
    server.stop()


def ask(api, username="IronHand", domain=DOMAIN):
    return api.post(f"/api/v0/user/{username}/webapps/{domain}/ssl/", AUTO, format="json")


def issued_by_pebble(cert: x509.Certificate, pebble: Pebble, chain_pem: str) -> bool:
    """The served leaf verifies up to the root pebble issues under."""
    root = x509.load_pem_x509_certificate(pebble.issuing_root().encode())
    chain = x509.load_pem_x509_certificates(chain_pem.encode())
    links = [cert, *chain[1:], root]
    for child, issuer in itertools.pairwise(links):
        child.verify_directly_issued_by(issuer)
    return chain[0] == cert


def test_it_orders_a_certificate_and_every_proxy_serves_it(owner_app, owner_api, proxies, pebble):
    started = time.monotonic()
    response = ask(owner_api)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "pending"

    row = tls.order(Certificate.objects.get().pk)
    assert row.last_error == "", row.last_error
    for proxy in proxies:
        wait_until(lambda p=proxy: p.serves(DOMAIN, row.serial), 10, what="new certificate")
    elapsed = time.monotonic() - started
    print(f"\nrequest -> certificate served by both proxies: {elapsed:.2f} s")

    assert issued_by_pebble(proxies[0].presented(DOMAIN), pebble, row.chain)
    info = owner_api.get(f"/api/v0/user/IronHand/webapps/{DOMAIN}/ssl/").json()
    assert info["cert_type"] == "letsencrypt-auto-renew"
    assert info["status"] == "installed" and info["last_error"] is None
    assert info["subject_alternate_names"] == [DOMAIN]
    assert info["next_renewal"] is not None
    assert not AcmeChallenge.objects.exists()  # answers withdrawn after the order


def test_the_challenge_is_answered_by_whichever_proxy_dns_points_at(
    owner_app, owner_api, proxies, pebble
):
    pebble.point(DOMAIN, "127.0.0.2")
    ask(owner_api)
    row = tls.order(Certificate.objects.get().pk)
    assert row.last_error == "", row.last_error
    for proxy in proxies:
        wait_until(lambda p=proxy: p.serves(DOMAIN, row.serial), 10, what="both proxies")


def test_an_unreachable_challenge_fails_with_its_cause_and_retries_on_time(
    owner_app, owner_api, proxies, pebble
):
    pebble.point(DOMAIN, "127.0.0.3")  # nothing listens there
    ask(owner_api)
    cert_id = Certificate.objects.get().pk
    before = timezone.now()

    row = tls.order(cert_id)

    assert "could not be reached" in row.last_error and DOMAIN in row.last_error
    assert not row.installed and row.failures == 1
    assert row.next_attempt_at >= before + timedelta(seconds=600)
    assert row.next_attempt_at <= timezone.now() + timedelta(seconds=600)
    assert tls.due(timezone.now()) == []  # backing off
    assert tls.due(row.next_attempt_at) == [cert_id]  # and due again on time
    assert DOMAIN not in {p.presented(DOMAIN).subject.rfc4514_string() for p in proxies}
    page = owner_api.get(f"/api/v0/user/IronHand/webapps/{DOMAIN}/ssl/").json()
    assert page["status"] == "failed" and "could not be reached" in page["last_error"]
    failed = AuditEvent.objects.filter(action="webapp.ssl.order", outcome="failed")
    assert failed.count() == 1

    pebble.unpoint(DOMAIN)
    outcome = tls.renew_due(now=row.next_attempt_at)
    assert outcome["renewed"] == 1
    second = Certificate.objects.get()
    assert second.installed and second.failures == 0 and second.last_error == ""


def test_a_renewal_while_the_acme_server_is_down_keeps_the_old_certificate(
    owner_app, owner_api, proxies, pebble, settings
):
    ask(owner_api)
    first = tls.order(Certificate.objects.get().pk)
    wait_until(lambda: proxies[0].serves(DOMAIN, first.serial), 10, what="first certificate")
    pebble.stop_pebble()
    settings.ACME_RENEW_DAYS_BEFORE = 100_000  # every certificate is due

    outcome = tls.renew_due()

    assert outcome == {"due": 1, "renewed": 0, "failed": 1, "skipped": 0}
    row = Certificate.objects.get()
    assert row.serial == first.serial and row.installed
    assert "cannot be reached" in row.last_error
    assert "stays in use" in row.status_text()
    assert all(p.serves(DOMAIN, first.serial) for p in proxies)

    pebble.start()
    outcome = tls.renew_due(now=row.next_attempt_at)
    assert outcome["renewed"] == 1
    renewed = Certificate.objects.get()
    assert renewed.serial != first.serial and renewed.last_error == ""
    for proxy in proxies:
        wait_until(lambda p=proxy: p.serves(DOMAIN, renewed.serial), 10, what="renewed")


def test_a_renewal_setting_that_makes_certificates_due_renews_them(
    owner_app, owner_api, proxies, pebble, settings
):
    ask(owner_api)
    first = tls.order(Certificate.objects.get().pk)
    assert tls.due(timezone.now()) == []
    settings.ACME_RENEW_DAYS_BEFORE = 100_000
    assert tls.due(timezone.now()) == [first.pk]
    assert tls.renew_due()["renewed"] == 1
    assert Certificate.objects.get().serial != first.serial


def test_only_one_order_per_domain_runs_at_a_time(owner_app, owner_api, pebble):
    ask(owner_api)
    cert_id = Certificate.objects.get().pk
    now = timezone.now()
    assert tls.claim(cert_id, now)
    assert tls.order(cert_id) is None  # the order in flight holds the domain
    assert tls.due(now) == []
    # An order that has been running for over twice the timeout is dead: its slot is free.
    later = now + timedelta(seconds=2 * settings.ACME_ORDER_TIMEOUT + 1)
    assert tls.claim(cert_id, later)


def test_orders_for_the_panel_or_a_domain_of_nobody_are_refused_before_any_acme_call(
    owner_api, outsider_api, owner_app, staff, pebble
):
    assert "control panel" in tls.orderable(settings.PANEL_HOST)
    assert "belongs to no web app" in tls.orderable("nobody.example")
    assert ask(owner_api, domain=settings.PANEL_HOST).status_code == 404
    assert ask(owner_api, domain="nobody.example").status_code == 404
    assert ask(outsider_api, "mallory", DOMAIN).status_code == 404
    assert ask(outsider_api, "IronHand", "IRONHAND.Example.Com").status_code == 404
    assert not Certificate.objects.exists() and not AcmeChallenge.objects.exists()


def test_without_an_acme_directory_the_request_is_refused(owner_app, owner_api, acme_settings):
    acme_settings.ACME_DIRECTORY_URL = ""
    response = ask(owner_api)
    assert response.status_code == 400
    assert "not set up" in response.json()["detail"]
    assert not Certificate.objects.exists()


def test_the_operator_switch_gives_every_new_app_an_automatic_certificate(owner, pebble, settings):
    settings.TLS_AUTO_FOR_NEW_APPS = True
    webapp = do_create_webapp("shop.ironhand.example", actor=owner, origin=CLI)
    row = Certificate.objects.get(webapp=webapp)
    assert row.automatic and tls.due(timezone.now()) == [row.pk]


def test_the_web_tab_says_automatic_and_when_it_renews(owner_web, owner_app, proxies, pebble):
    response = owner_web.post(f"/user/IronHand/webapps/{DOMAIN}/ssl/", {"action": "auto"})
    assert response.status_code == 302
    row = tls.order(Certificate.objects.get().pk)
    page = owner_web.get(f"/user/IronHand/webapps/{DOMAIN}/").content.decode()
    assert f"Automatic (renews on {row.renew_after:%Y-%m-%d})" in page


def test_renewing_100_domains(owner, proxies, pebble, settings):
    settings.MAX_APPS_PER_USER = 101  # one owner's hundred apps, beyond the default cap
    for i in range(100):
        webapp = do_create_webapp(f"site{i:03d}.ironhand.example", actor=owner, origin=CLI)
        Certificate.objects.create(
            webapp=webapp, cert_type=Certificate.Type.AUTO, renew_after=timezone.now()
        )
    started = time.monotonic()
    outcome = tls.renew_due()
    elapsed = time.monotonic() - started
    from django.db import connection

    sequential = connection.vendor == "sqlite" and connection.is_in_memory_db()
    at_a_time = 1 if sequential else settings.ACME_RENEW_CONCURRENCY
    print(f"\nrenewal run for 100 domains ({at_a_time} at a time, {connection.vendor}): "
          f"{elapsed:.1f} s")  # fmt: skip
    assert outcome == {"due": 100, "renewed": 100, "failed": 0, "skipped": 0}
    held = Certificate.objects.exclude(chain="").count()
    assert held == 100
