"""Certificate private keys sealed to the proxies: only a holder of the proxies' X25519 key can
open them (decision 0091).

The panel stores and publishes a certificate's private key only in sealed form; it seals with
the *public* half and never needs the private half, so neither a database dump, nor a Redis
dump, nor the panel's own processes yield a key. The proxies hold the private half and open a
sealed key in memory when they install the certificate.

The rule (one owner, here)::

    sealed     = "x25519-aes256gcm-v1:" + base64(ephemeral public (32) + nonce (12) + ciphertext)
    shared     = X25519(ephemeral private, recipient public)
    key        = HKDF-SHA256(shared, salt = ephemeral public + recipient public,
                             info = "certificate-key-seal-v1", 32 bytes)
    ciphertext = AES-256-GCM(key, nonce, plaintext,
                             associated data = "certificate-key-v1\\n" + domain)

The associated data binds a sealed key to its domain: a sealed key moved to another entry does
not open. Key files on one machine: ``VAR_DIR/keys/certificate-keys.key`` (PKCS#8 PEM, 0600) and
``certificate-keys.pub`` (``x25519:<base64>``); whichever process needs them first makes them.
Across machines the panel is given the public key (``TLS_KEYS_PUBLIC``: the key or a file) and
every proxy the private key file (``--tls-keys-file``).

Pure ``cryptography`` and files: no Django, no Redis, no settings.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from routing.keys import load_private_key_file, read_key_file

__all__ = [
    "PRIVATE_NAME",
    "PUBLIC_ENV",
    "PUBLIC_NAME",
    "SEALED_PREFIX",
    "SealError",
    "load_or_create_private_key",
    "load_private_key",
    "open_sealed",
    "parse_public_key",
    "public_key_from",
    "public_key_text",
    "seal",
]

SEALED_PREFIX = "x25519-aes256gcm-v1:"
PUBLIC_PREFIX = "x25519:"
PRIVATE_NAME = "certificate-keys.key"
PUBLIC_NAME = "certificate-keys.pub"
PUBLIC_ENV = "TLS_KEYS_PUBLIC"
AAD_CONTEXT = b"certificate-key-v1\n"
HKDF_INFO = b"certificate-key-seal-v1"
MAX_SEALED = 64 * 1024  # a sealed PEM key is a few hundred bytes; RSA-8192 stays far below


class SealError(ValueError):
    """A sealed value that does not open (malformed, another recipient, another domain)."""


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _derive(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=HKDF_INFO)
    return hkdf.derive(shared)


def _aad(domain: str) -> bytes:
    return AAD_CONTEXT + domain.encode("ascii")


def seal(public: X25519PublicKey, plaintext: bytes, domain: str) -> str:
    """``plaintext`` (a PEM private key) sealed to ``public`` and bound to ``domain``."""
    ephemeral = X25519PrivateKey.generate()
    eph_raw = _raw(ephemeral.public_key())
    key = _derive(ephemeral.exchange(public), eph_raw, _raw(public))
    nonce = os.urandom(12)
    blob = eph_raw + nonce + AESGCM(key).encrypt(nonce, plaintext, _aad(domain))
    return SEALED_PREFIX + base64.b64encode(blob).decode("ascii")


def open_sealed(private: X25519PrivateKey, sealed: str, domain: str) -> bytes:
    """The plaintext of ``sealed`` for ``domain``; ``SealError`` naming the problem."""
    if not isinstance(sealed, str) or not sealed.startswith(SEALED_PREFIX):
        raise SealError(f"a sealed key starts with {SEALED_PREFIX!r}")
    if len(sealed) > MAX_SEALED:
        raise SealError(f"a sealed key is at most {MAX_SEALED} characters")
    try:
        blob = base64.b64decode(sealed[len(SEALED_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise SealError("the sealed key is not base64") from None
    if len(blob) < 32 + 12 + 16:
        raise SealError("the sealed key is too short")
    eph_raw, nonce, ciphertext = blob[:32], blob[32:44], blob[44:]
    recipient = _raw(private.public_key())
    key = _derive(private.exchange(X25519PublicKey.from_public_bytes(eph_raw)), eph_raw, recipient)
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, _aad(domain))
    except InvalidTag:
        raise SealError(
            f"the sealed key for {domain} does not open with this key (sealed to another key, "
            "for another domain, or altered)"
        ) from None


def public_key_text(public: X25519PublicKey) -> str:
    return PUBLIC_PREFIX + base64.b64encode(_raw(public)).decode("ascii")


def parse_public_key(text: str) -> X25519PublicKey:
    value = text.strip()
    if not value.startswith(PUBLIC_PREFIX):
        raise ValueError(f"public key {value[:60]!r} must start with {PUBLIC_PREFIX!r}")
    try:
        raw = base64.b64decode(value[len(PUBLIC_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"public key {value[:60]!r} is not base64") from None
    if len(raw) != 32:
        raise ValueError(f"public key {value[:60]!r} has {len(raw)} bytes (X25519 has 32)")
    return X25519PublicKey.from_public_bytes(raw)


def load_private_key(path: str | os.PathLike[str]) -> X25519PrivateKey:
    return load_private_key_file(path, X25519PrivateKey, "certificate-keys private key")


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)  # exclusive: FileExistsError when another process won
    finally:
        Path(tmp).unlink(missing_ok=True)


def load_or_create_private_key(var_dir: str | os.PathLike[str]) -> X25519PrivateKey:
    """The machine's pair under ``VAR_DIR/keys/``, made on first use (racing processes get the
    same pair)."""
    directory = Path(var_dir) / "keys"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / PRIVATE_NAME
    if not path.exists():
        key = X25519PrivateKey.generate()
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        with contextlib.suppress(FileExistsError):  # another process made it first
            _write_new(path, pem, 0o600)
    key = load_private_key(path)
    public = directory / PUBLIC_NAME
    if not public.exists():
        with contextlib.suppress(FileExistsError):
            _write_new(public, (public_key_text(key.public_key()) + "\n").encode(), 0o644)
    return key


def public_key_from(var_dir: str | os.PathLike[str], value: str | None) -> X25519PublicKey:
    """The key the panel seals to: ``value`` (``x25519:...`` or a file holding it) when given,
    else the machine's pair under ``VAR_DIR/keys/`` (made on first use)."""
    if value and value.strip():
        text = value.strip()
        if not text.startswith(PUBLIC_PREFIX):
            try:
                text = read_key_file(Path(text)).decode("ascii").strip()
            except FileNotFoundError:
                raise ValueError(
                    f"{PUBLIC_ENV} {value!r} is neither 'x25519:...' nor a file"
                ) from None
        return parse_public_key(text)
    public = Path(var_dir) / "keys" / PUBLIC_NAME
    if public.exists():
        return parse_public_key(read_key_file(public).decode("ascii"))
    return load_or_create_private_key(var_dir).public_key()
