"""Password protection: HTTP basic authentication in front of an app, checked by the node.

The panel keeps an app's password only as Django's PBKDF2 hash string
(``pbkdf2_sha256$<iterations>$<salt>$<base64 digest>``, ``PBKDF2PasswordHasher``); the node gets
that string in the app's ``AppSpec`` and checks a request's credentials with ``hashlib`` and
``hmac.compare_digest`` alone (no Django here).

Rules:
- the user name and the derived key are both compared in constant time, and the key is derived
  even when the user name is wrong, so timing tells nothing about either;
- a KDF run costs about half a second on purpose, so it never runs on the event loop: one worker
  thread runs them one at a time (a flood of guesses queues there, the loop keeps serving);
- outcomes are cached per process, right and wrong alike, keyed by a keyed hash of (verifier,
  Authorization header) under a per-process random key: a visitor's second request costs no KDF
  run and the cache holds no password. A new password is a new verifier, hence a new key. The
  cache is bounded (oldest entries go first).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
from concurrent.futures import ThreadPoolExecutor

ALGORITHM = "pbkdf2_sha256"
# Django's default is 1,000,000 (5.2); a verifier asking for far more is refused, not run.
MAX_ITERATIONS = 10_000_000
MAX_CACHE_ENTRIES = 4096
# A header longer than this is not credentials anyone typed.
MAX_HEADER_BYTES = 4096


def verify(encoded: str, username: str, expected_username: str, password: str) -> bool:
    """True when ``username`` and ``password`` match the verifier (both checked every time)."""
    name_ok = hmac.compare_digest(username.encode(), expected_username.encode())
    try:
        algorithm, iterations, salt, digest = encoded.split("$", 3)
        rounds = int(iterations)
    except ValueError:
        return False
    if algorithm != ALGORITHM or not 1 <= rounds <= MAX_ITERATIONS:
        return False
    derived = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), rounds)
    key_ok = hmac.compare_digest(base64.b64encode(derived), digest.encode())
    return name_ok and key_ok


def parse_basic(header: bytes | None) -> tuple[str, str] | None:
    """``(username, password)`` from an ``Authorization: Basic ...`` value, else None."""
    if not header or len(header) > MAX_HEADER_BYTES:
        return None
    scheme, _, token = header.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon else None


def challenge(realm: str) -> tuple[bytes, bytes]:
    """The ``WWW-Authenticate`` header of a 401 (RFC 7617)."""
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    return b"WWW-Authenticate", f'Basic realm="{quoted}", charset="UTF-8"'.encode("latin-1")


class Guard:
    """Checks credentials against apps' verifiers, with the per-process cache described above."""

    def __init__(self, *, max_entries: int = MAX_CACHE_ENTRIES) -> None:
        self.max_entries = max_entries
        self._key = secrets.token_bytes(32)
        self._outcomes: dict[bytes, bool] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="node-kdf")
        self.kdf_runs = 0

    def _cache_key(self, verifier: str, header: bytes) -> bytes:
        h = hashlib.blake2b(key=self._key, digest_size=16)
        h.update(verifier.encode())
        h.update(b"\0")
        h.update(header)
        return h.digest()

    def cached(self, username: str, verifier: str, header: bytes | None) -> bool | None:
        """The outcome without a KDF run when it is known (no credentials: False), else None."""
        if parse_basic(header) is None:
            return False
        return self._outcomes.get(self._cache_key(verifier, header or b""))

    async def check(self, username: str, verifier: str, header: bytes | None) -> bool:
        known = self.cached(username, verifier, header)
        if known is not None:
            return known
        assert header is not None  # parse_basic accepted it
        given_user, given_password = parse_basic(header)  # type: ignore[misc]
        loop = asyncio.get_running_loop()
        self.kdf_runs += 1
        ok = await loop.run_in_executor(
            self._executor, verify, verifier, given_user, username, given_password
        )
        if len(self._outcomes) >= self.max_entries:
            self._outcomes.pop(next(iter(self._outcomes)))
        self._outcomes[self._cache_key(verifier, header)] = ok
        return ok

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
