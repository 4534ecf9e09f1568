"""Checking a certificate and its key before anything is stored (pure: PEM text in, facts out).

Rules, each refused with a ``CertificateError`` naming the problem and the field:
- ``cert`` is one or more PEM certificates, leaf first, each issued by the next (the chain is
  checked link by link: issuer name and signature); at most ``MAX_PEM`` characters each field;
- ``private_key`` is one unencrypted PEM private key (RSA, EC or Ed25519) whose public key is
  the leaf's;
- the leaf's names (subjectAltName DNS names, else its common name) cover the domain: the name
  itself, or a wildcard ``*.parent`` for a domain one label below ``parent``;
- now lies between the leaf's notBefore and notAfter.
The chain is not checked against a list of trusted roots: the browser decides whom it trusts,
and private CAs are a use of their own. Nothing here logs or returns the key's text.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import NameOID

MAX_PEM = 64 * 1024
MAX_CHAIN = 10
KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)


class CertificateError(ValueError):
    def __init__(self, message: str, field: str = "cert") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class CertInfo:
    chain_pem: str  # leaf first, normalised PEM
    serial: str
    not_before: datetime
    not_after: datetime
    issuer_name: str
    subject_name: str
    subject_alternate_names: list[str]


def _name(name: x509.Name) -> str:
    """The common name, else the organisation, else the whole name (RFC 4514)."""
    for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME):
        found = name.get_attributes_for_oid(oid)
        if found:
            return str(found[0].value)
    return name.rfc4514_string()


def dns_names(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return [str(cns[0].value)] if cns else []
    return ext.value.get_values_for_type(x509.DNSName)


def covers(names: list[str], domain: str) -> bool:
    for raw in names:
        name = raw.lower().rstrip(".")
        if name == domain:
            return True
        if name.startswith("*.") and "." in domain and domain.split(".", 1)[1] == name[2:]:
            return True
    return False


def _text(value: object, field: str, what: str) -> bytes:
    if not isinstance(value, str) or not value.strip():
        raise CertificateError(f"{what} is missing: give it as PEM text", field)
    if len(value) > MAX_PEM:
        raise CertificateError(f"{what} is {len(value)} characters; at most {MAX_PEM}", field)
    try:
        return value.strip().encode("ascii")
    except UnicodeEncodeError:
        raise CertificateError(
            f"{what} is not PEM (it holds non-ASCII characters)", field
        ) from None


def parse_chain(text: object) -> list[x509.Certificate]:
    data = _text(text, "cert", "the certificate")
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CertificateError("the certificate is not PEM (no BEGIN CERTIFICATE line)")
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CertificateError(f"the certificate is malformed PEM: {exc}") from None
    if len(chain) > MAX_CHAIN:
        raise CertificateError(f"the chain has {len(chain)} certificates; at most {MAX_CHAIN}")
    for index, (child, issuer) in enumerate(itertools.pairwise(chain), start=1):
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            raise CertificateError(
                f"the chain is broken: certificate {index + 1} did not issue certificate "
                f"{index} (give the leaf first, then each issuer in order)"
            ) from None
    return chain


def describe(chain: list[x509.Certificate]) -> CertInfo:
    leaf = chain[0]
    return CertInfo(
        chain_pem="".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in chain),
        serial=format(leaf.serial_number, "x"),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        issuer_name=_name(leaf.issuer),
        subject_name=_name(leaf.subject),
        subject_alternate_names=dns_names(leaf),
    )


def check_upload(
    cert: object, private_key: object, domain: str, now: datetime
) -> tuple[CertInfo, bytes]:
    """(the certificate's facts, the key as PKCS#8 PEM) if the upload may be installed for
    ``domain`` at ``now``; else ``CertificateError``."""
    chain = parse_chain(cert)
    key_data = _text(private_key, "private_key", "the private key")
    if b"-----BEGIN" not in key_data or b"PRIVATE KEY-----" not in key_data:
        raise CertificateError(
            "the private key is not PEM (no BEGIN ... PRIVATE KEY line)", "private_key"
        )
    if b"ENCRYPTED" in key_data:
        raise CertificateError(
            "the private key is encrypted; upload it without a passphrase", "private_key"
        )
    try:
        key = load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        reason = str(exc).split("\n")[0][:200]
        raise CertificateError(
            f"the private key is malformed PEM: {reason}", "private_key"
        ) from None
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise CertificateError(
            f"the private key is a {type(key).__name__}; use RSA, EC or Ed25519", "private_key"
        )
    leaf = chain[0]
    spki = PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(Encoding.DER, spki) != leaf.public_key().public_bytes(
        Encoding.DER, spki
    ):
        raise CertificateError(
            "the private key does not match the certificate (it is the key of another one)",
            "private_key",
        )
    info = describe(chain)
    if not covers(info.subject_alternate_names, domain):
        listed = ", ".join(info.subject_alternate_names) or "none"
        raise CertificateError(
            f"the certificate's names do not cover {domain} (it is for: {listed})"
        )
    if now < info.not_before:
        raise CertificateError(
            f"the certificate is not valid yet: it starts on {info.not_before:%Y-%m-%d %H:%M} UTC"
        )
    if now >= info.not_after:
        raise CertificateError(f"the certificate expired on {info.not_after:%Y-%m-%d %H:%M} UTC")
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return info, pem
