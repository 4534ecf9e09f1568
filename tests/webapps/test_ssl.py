"""``GET|POST|DELETE /api/v0/user/<u>/webapps/<d>/ssl/`` with uploaded certificates, in the
official client's shape (``set_ssl`` posts JSON ``cert`` and ``private_key``; ``get_ssl_info``
reads ``not_after`` and the names), the signed bundle the proxies read, and the refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import trustme
from cryptography import x509
from django.conf import settings

from panel.accounts.models import AuditEvent
from routing.certs import CERTS, CertBundle
from routing.keys import load_or_create_signing_key
from routing.sealed import load_or_create_private_key, open_sealed
from webapps.models import Certificate
from webapps.redis_client import get_redis

DOMAIN = "ironhand.example.com"


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.ROUTES_SIGNING_KEY_FILE = ""
    settings.TLS_KEYS_PUBLIC = ""
    return settings.VAR_DIR


@pytest.fixture
def ca():
    return trustme.CA(organization_name="Owners CA")


def pem_pair(ca, *names, **kwargs) -> tuple[str, str]:
    leaf = ca.issue_cert(*names, **kwargs)
    chain = "".join(b.bytes().decode() for b in leaf.cert_chain_pems)
    return chain, leaf.private_key_pem.bytes().decode()


def url(username: str, domain: str) -> str:
    return f"/api/v0/user/{username}/webapps/{domain}/ssl/"


def set_ssl(client, username, domain, cert, key):
    """What pythonanywhere-core's Webapp.set_ssl sends."""
    return client.post(
        url(username, domain),
        data=json.dumps({"cert": cert, "private_key": key}),
        content_type="application/json",
    )


def bundle() -> CertBundle | None:
    raw = get_redis().get(CERTS.key(settings.REDIS_PREFIX))
    return CertBundle.from_bytes(raw) if raw is not None else None


def test_it_installs_an_upload_and_get_returns_what_get_ssl_info_reads(
    owner, owner_app, owner_api, ca, django_capture_on_commit_callbacks
):
    cert, key = pem_pair(ca, DOMAIN)
    with django_capture_on_commit_callbacks(execute=True):
        response = set_ssl(owner_api, "IronHand", "IronHand.Example.com", cert, key)
    assert response.status_code == 200, response.content

    info = owner_api.get(url("IronHand", DOMAIN)).json()
    leaf = x509.load_pem_x509_certificate(cert.encode())
    assert datetime.fromisoformat(info["not_after"]) == leaf.not_valid_after_utc
    assert info["subject_alternate_names"] == [DOMAIN]
    assert info["issuer_name"] == "Owners CA"  # the CA has no common name: its organisation
    assert info["cert_type"] == "manual"
    assert info["serial"] == format(leaf.serial_number, "x")


def test_the_proxies_get_the_chain_and_a_sealed_key_only_they_can_open(
    owner_app, owner_api, ca, var_dir, django_capture_on_commit_callbacks
):
    cert, key = pem_pair(ca, DOMAIN)
    with django_capture_on_commit_callbacks(execute=True):
        set_ssl(owner_api, "IronHand", DOMAIN, cert, key)

    held = bundle()
    entry = held.certificates[DOMAIN]
    assert "PRIVATE KEY" not in entry.key
    opened = open_sealed(load_or_create_private_key(var_dir), entry.key, DOMAIN)
    assert opened.startswith(b"-----BEGIN PRIVATE KEY-----")
    signer = load_or_create_signing_key(var_dir)
    line = get_redis().get(CERTS.signature_key(settings.REDIS_PREFIX))
    from routing.signing import verify

    raw = get_redis().get(CERTS.key(settings.REDIS_PREFIX))
    verify(CERTS.context + raw, line, [signer.public_key()])


def test_a_database_dump_holds_no_private_key(
    owner_app, owner_api, ca, django_capture_on_commit_callbacks
):
    cert, key = pem_pair(ca, DOMAIN)
    with django_capture_on_commit_callbacks(execute=True):
        set_ssl(owner_api, "IronHand", DOMAIN, cert, key)
    body = key.split("-----")[2].strip().splitlines()[1]
    row = Certificate.objects.get()
    dumped = json.dumps(
        [list(Certificate.objects.values()), list(AuditEvent.objects.values("detail"))],
        default=str,
    )
    assert "PRIVATE KEY" not in dumped and body not in dumped
    assert row.sealed_key.startswith("x25519-aes256gcm-v1:")


def test_a_wildcard_covers_a_domain_one_label_below(owner_app, owner_api, ca):
    cert, key = pem_pair(ca, "*.example.com")
    assert set_ssl(owner_api, "IronHand", DOMAIN, cert, key).status_code == 200


def test_an_internationalised_domain_takes_a_certificate_for_its_ascii_form(
    unicode_app, owner_api, ca
):
    cert, key = pem_pair(ca, "xn--bcher-kva.example")
    response = set_ssl(owner_api, "IronHand", "BÜCHER.example", cert, key)
    assert response.status_code == 200, response.content


def refused(response, field: str, words: str) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert words in " ".join(body.get(field, [])) + body["detail"], body
    assert not Certificate.objects.exists()


def test_malformed_pem_is_refused(owner_app, owner_api, ca):
    _cert, key = pem_pair(ca, DOMAIN)
    bad = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
    refused(set_ssl(owner_api, "IronHand", DOMAIN, bad, key), "cert", "malformed PEM")
    refused(set_ssl(owner_api, "IronHand", DOMAIN, "hello", key), "cert", "not PEM")


def test_a_malformed_key_is_refused(owner_app, owner_api, ca):
    cert, _key = pem_pair(ca, DOMAIN)
    bad = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    refused(set_ssl(owner_api, "IronHand", DOMAIN, cert, bad), "private_key", "malformed PEM")


def test_a_key_that_does_not_match_is_refused(owner_app, owner_api, ca):
    cert, _ = pem_pair(ca, DOMAIN)
    _, other_key = pem_pair(ca, DOMAIN)
    refused(set_ssl(owner_api, "IronHand", DOMAIN, cert, other_key), "private_key",
            "does not match")  # fmt: skip


def test_names_that_do_not_cover_the_domain_are_refused(owner_app, owner_api, ca):
    cert, key = pem_pair(ca, "other.example.com", "*.shop.example.com")
    refused(set_ssl(owner_api, "IronHand", DOMAIN, cert, key), "cert",
            f"do not cover {DOMAIN}")  # fmt: skip


def test_an_expired_certificate_is_refused(owner_app, owner_api, ca):
    past = datetime.now(UTC) - timedelta(days=1)
    cert, key = pem_pair(ca, DOMAIN, not_before=past - timedelta(days=90), not_after=past)
    refused(set_ssl(owner_api, "IronHand", DOMAIN, cert, key), "cert", "expired on")


def test_a_certificate_not_valid_yet_is_refused(owner_app, owner_api, ca):
    future = datetime.now(UTC) + timedelta(days=2)
    cert, key = pem_pair(ca, DOMAIN, not_before=future, not_after=future + timedelta(days=90))
    refused(set_ssl(owner_api, "IronHand", DOMAIN, cert, key), "cert", "not valid yet")


def test_a_broken_chain_is_refused(owner_app, owner_api, ca):
    leaf_pem, key = pem_pair(ca, DOMAIN)
    stranger = trustme.CA().cert_pem.bytes().decode()
    cert = leaf_pem.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    refused(set_ssl(owner_api, "IronHand", DOMAIN, cert + stranger, key), "cert",
            "chain is broken")  # fmt: skip


def test_a_10_mb_upload_is_refused_before_parsing(owner_app, owner_api, ca):
    cert, key = pem_pair(ca, DOMAIN)
    response = set_ssl(owner_api, "IronHand", DOMAIN, cert + "A" * (10 * 1024 * 1024), key)
    assert response.status_code == 400
    assert "at most" in response.json()["detail"]
    assert not Certificate.objects.exists()


def test_an_encrypted_key_is_refused_with_what_to_do(owner_app, owner_api, ca):
    cert, _ = pem_pair(ca, DOMAIN)
    encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
    refused(set_ssl(owner_api, "IronHand", DOMAIN, cert, encrypted), "private_key",
            "without a passphrase")  # fmt: skip


def test_delete_removes_it_and_the_proxies_drop_it(
    owner_app, owner_api, ca, django_capture_on_commit_callbacks
):
    cert, key = pem_pair(ca, DOMAIN)
    with django_capture_on_commit_callbacks(execute=True):
        set_ssl(owner_api, "IronHand", DOMAIN, cert, key)
    with django_capture_on_commit_callbacks(execute=True):
        assert owner_api.delete(url("IronHand", DOMAIN)).status_code == 204
    assert owner_api.get(url("IronHand", DOMAIN)).status_code == 404
    assert DOMAIN not in bundle().certificates


def test_get_without_a_certificate_says_the_platform_one_is_presented(owner_app, owner_api):
    response = owner_api.get(url("IronHand", DOMAIN))
    assert response.status_code == 404
    assert "platform" in response.json()["detail"]


@pytest.mark.parametrize("spelling", [DOMAIN, "IRONHAND.example.COM", "ironhand.example.com."])
def test_another_users_app_is_404_on_every_method_and_nothing_is_stored(
    owner_app, outsider_api, ca, spelling
):
    cert, key = pem_pair(ca, DOMAIN)
    assert outsider_api.get(url("mallory", spelling)).status_code == 404
    assert set_ssl(outsider_api, "mallory", spelling, cert, key).status_code == 404
    assert set_ssl(outsider_api, "IronHand", spelling, cert, key).status_code == 404
    assert outsider_api.delete(url("mallory", spelling)).status_code == 404
    auto = outsider_api.post(url("mallory", spelling), {"cert_type": "letsencrypt-auto-renew"},
                             format="json")  # fmt: skip
    assert auto.status_code == 404
    assert not Certificate.objects.exists()


def test_force_https_reaches_the_bundle(owner_app, owner_api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_api.patch(
            f"/api/v0/user/IronHand/webapps/{DOMAIN}/", {"force_https": True}, format="json"
        )
    assert response.status_code == 200 and response.json()["force_https"] is True
    assert bundle().force_https == {DOMAIN}


def test_a_republish_of_the_same_content_makes_no_new_version(
    owner_app, owner_api, ca, django_capture_on_commit_callbacks
):
    from webapps import tls

    cert, key = pem_pair(ca, DOMAIN)
    with django_capture_on_commit_callbacks(execute=True):
        set_ssl(owner_api, "IronHand", DOMAIN, cert, key)
    version = bundle().version
    assert tls.publish() is None
    assert bundle().version == version


def test_the_web_tab_shows_status_and_expiry_and_uploads(owner_web, owner_app, ca):
    page = owner_web.get(f"/user/IronHand/webapps/{DOMAIN}/")
    assert b"No certificate of its own" in page.content
    cert, key = pem_pair(ca, DOMAIN)
    response = owner_web.post(
        f"/user/IronHand/webapps/{DOMAIN}/ssl/",
        {"action": "upload", "cert": cert, "private_key": key},
    )
    assert response.status_code == 302
    page = owner_web.get(f"/user/IronHand/webapps/{DOMAIN}/")
    row = Certificate.objects.get()
    assert f"expires on {row.not_after:%Y-%m-%d}".encode() in page.content


def test_the_web_tab_forces_https(owner_web, owner_app):
    owner_web.post(
        f"/user/IronHand/webapps/{DOMAIN}/ssl/", {"action": "force_https", "force_https": "on"}
    )
    owner_app.refresh_from_db()
    assert owner_app.force_https is True


def test_the_web_tab_refuses_another_users_app(outsider_web, owner_app, ca):
    cert, key = pem_pair(ca, DOMAIN)
    response = outsider_web.post(
        f"/user/IronHand/webapps/{DOMAIN}/ssl/",
        {"action": "upload", "cert": cert, "private_key": key},
    )
    assert response.status_code == 404
    assert not Certificate.objects.exists()
