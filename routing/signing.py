"""Signed route tables: Ed25519 over the exact bytes of the table as stored.

The rule (docs/routing.md, "Redis contract"; examples in routing/vectors.json, "signatures"):

- The table is stored as its JSON bytes, unchanged. Its signature travels beside it as one ASCII
  line, the *signature line*::

      ed25519 <key id> <signature>

  ``key id`` is the first 16 hex digits (lower case) of SHA-256 of the raw 32-byte public key;
  ``signature`` is the standard base64 (with padding, 88 characters) of the 64-byte Ed25519
  signature of ``CONTEXT + table bytes``, where ``CONTEXT = b"route-table-signature-v1\\n"``.
  The context keeps a route-table signature from meaning anything else.
- A reader that trusts the public keys K takes the table only if its signature line is well
  formed, names one of K by its key id, and the signature verifies with that key over exactly
  the bytes read. Nothing is re-serialised before verifying: a single changed byte is refused.
- A public key is written ``ed25519:<standard base64 of the raw 32 bytes>``.
- A *framed* table (a reader's state file) is the signature line, one line feed, then the table
  bytes. A file that starts with ``{`` is an unsigned table.

Pure: ``cryptography`` only; no I/O, no settings, no Django, no Redis.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from routing.table import RouteTable

__all__ = [
    "BAD_SIGNATURE",
    "CONTEXT",
    "MAX_TRUSTED_KEYS",
    "UNSIGNED",
    "SignatureRefused",
    "frame",
    "key_id",
    "parse_public_key",
    "public_key_text",
    "sign",
    "signed_message",
    "trusted_by_id",
    "unframe",
    "verified_table",
    "verify",
]

CONTEXT = b"route-table-signature-v1\n"
SCHEME = "ed25519"
# Reasons a signed reader refuses a table, as counted in its stats and /metrics.
UNSIGNED = "unsigned"
BAD_SIGNATURE = "bad_signature"
# The current key and the next one, during a rotation.
MAX_TRUSTED_KEYS = 2
MAX_LINE = 160  # a well-formed line is 113 bytes

_LINE = re.compile(rb"ed25519 ([0-9a-f]{16}) ([A-Za-z0-9+/]{86}==)")
_PUBLIC_PREFIX = "ed25519:"


class SignatureRefused(ValueError):
    """A table a signed reader must refuse; ``reason`` is ``UNSIGNED`` or ``BAD_SIGNATURE``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key's id in signature lines: 16 hex digits of SHA-256 of its raw bytes."""
    return hashlib.sha256(_raw(public_key)).hexdigest()[:16]


def public_key_text(public_key: Ed25519PublicKey) -> str:
    """``ed25519:<base64>``: how a public key is written in flags, files and env variables."""
    return _PUBLIC_PREFIX + base64.b64encode(_raw(public_key)).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    """The key written as ``ed25519:<base64 of 32 bytes>``; ``ValueError`` naming the problem."""
    value = text.strip()
    if not value.startswith(_PUBLIC_PREFIX):
        raise ValueError(f"public key {value[:60]!r} must start with {_PUBLIC_PREFIX!r}")
    encoded = value[len(_PUBLIC_PREFIX) :]
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"public key {value[:60]!r} is not base64") from None
    if len(raw) != 32:
        raise ValueError(f"public key {value[:60]!r} has {len(raw)} bytes (an Ed25519 key has 32)")
    if base64.b64encode(raw).decode("ascii") != encoded:
        raise ValueError(f"public key {value[:60]!r} is not in canonical base64")
    return Ed25519PublicKey.from_public_bytes(raw)


def signed_message(table_bytes: bytes) -> bytes:
    """The bytes the signature covers: ``CONTEXT`` followed by the table bytes as stored."""
    return CONTEXT + table_bytes


def sign(table_bytes: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The signature line for ``table_bytes`` (Ed25519 is deterministic: same input, same line)."""
    if not isinstance(table_bytes, bytes):
        raise TypeError(f"table_bytes must be bytes, got {type(table_bytes).__name__}")
    signature = private_key.sign(signed_message(table_bytes))
    kid = key_id(private_key.public_key())
    return f"{SCHEME} {kid} {base64.b64encode(signature).decode('ascii')}".encode("ascii")


def trusted_by_id(trusted_keys: Iterable[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    """Key id -> key; ``ValueError`` unless there are one or two distinct Ed25519 keys."""
    if trusted_keys is None:
        raise ValueError(
            "no trusted keys: every reader checks signatures (routing.keys.trusted_keys_from)"
        )
    by_id: dict[str, Ed25519PublicKey] = {}
    for key in trusted_keys:
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"trusted keys must be Ed25519 public keys, got {type(key).__name__}")
        by_id[key_id(key)] = key
    if not 1 <= len(by_id) <= MAX_TRUSTED_KEYS:
        raise ValueError(
            f"{len(by_id)} trusted keys: give one, or two while rotating (the current and the next)"
        )
    return by_id


def verify(
    table_bytes: bytes,
    line: bytes | None,
    trusted_keys: Sequence[Ed25519PublicKey] | dict[str, Ed25519PublicKey],
) -> str:
    """The key id that signed ``table_bytes`` with signature ``line``, if it is a trusted key;
    otherwise ``SignatureRefused`` (``UNSIGNED`` when there is no line, else ``BAD_SIGNATURE``)."""
    by_id = trusted_keys if isinstance(trusted_keys, dict) else trusted_by_id(trusted_keys)
    if line is None:
        raise SignatureRefused(UNSIGNED, "the table has no signature")
    match = _LINE.fullmatch(line) if len(line) <= MAX_LINE else None
    if match is None:
        raise SignatureRefused(
            BAD_SIGNATURE, f"the signature line {line[:MAX_LINE]!r} is not 'ed25519 <id> <sig>'"
        )
    kid = match.group(1).decode("ascii")
    key = by_id.get(kid)
    if key is None:
        raise SignatureRefused(
            BAD_SIGNATURE,
            f"signed by key {kid}, which is not trusted (trusted: {', '.join(sorted(by_id))})",
        )
    signature = base64.b64decode(match.group(2), validate=True)
    if base64.b64encode(signature) != match.group(2):
        raise SignatureRefused(BAD_SIGNATURE, "the signature is not in canonical base64")
    try:
        key.verify(signature, signed_message(table_bytes))
    except InvalidSignature:
        raise SignatureRefused(
            BAD_SIGNATURE, f"the signature does not verify with key {kid}"
        ) from None
    return kid


def verified_table(
    table_bytes: bytes,
    line: bytes | None,
    trusted_keys: Sequence[Ed25519PublicKey] | dict[str, Ed25519PublicKey],
) -> tuple[RouteTable, str]:
    """(the table, the key id that signed it): the signature is checked first (never parse what
    is not signed), then the table. There is no way to skip the check: ``trusted_keys`` must be
    one or two keys. Raises ``SignatureRefused`` or ``InvalidTable`` (both ``ValueError``)."""
    signer = verify(table_bytes, line, trusted_keys)
    return RouteTable.from_json(table_bytes), signer


def frame(table_bytes: bytes, line: bytes) -> bytes:
    """A table and its signature line in one document (a reader's state file)."""
    if b"\n" in line:
        raise ValueError("a signature line has no line feed")
    return line + b"\n" + table_bytes


def unframe(data: bytes) -> tuple[bytes, bytes | None]:
    """(table bytes, signature line or None) of a framed table or of a plain, unsigned one."""
    if data.startswith(SCHEME.encode("ascii") + b" "):
        line, sep, table_bytes = data.partition(b"\n")
        if sep:
            return table_bytes, line
    return data, None
