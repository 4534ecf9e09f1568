"""Certificates and ACME challenge answers for the proxies: two signed documents in Redis beside
the route table, written by the panel and read by every proxy (docs/routing.md, "Certificates
and challenges"; decisions 0090, 0091).

- ``<prefix>tls`` (with ``<prefix>tls:sig``, channel ``<prefix>tls:changed``): the certificate
  bundle: per app domain its chain (PEM) and its private key *sealed to the proxies*
  (``routing.sealed``); and the domains whose plain HTTP is redirected to HTTPS.
- ``<prefix>acme`` (with ``<prefix>acme:sig``, channel ``<prefix>acme:changed``): HTTP-01
  answers, token -> key authorization.

Invariants:
- Each document is signed with the route table's Ed25519 key (``routing.signing``'s line), over
  its own context followed by the exact bytes stored: ``sign(CONTEXT + bytes)``. A route table
  starts with ``{``, a context never does, so no signature of one kind ever verifies as another.
- A reader takes a document only if its signature verifies with a trusted key and it parses
  strictly, and only with a higher version than the one held; anything else is counted (by
  reason, as for route tables) and changes nothing. No private key is readable from Redis: the
  bundle holds sealed keys only, so the Redis reader user needs no secret beyond its password.
- The publisher stores a new version only when the content differs from what Redis holds (a
  periodic republish of the same content changes nothing); versions are the hybrid clock of
  ``routing.versions`` (never below the caller's floor), written with the route table's
  compare-and-set script, so a late publisher cannot overwrite a newer document.

Pure asyncio and redis-py, no Django.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from routing.connect import async_client
from routing.hosts import InvalidHost, canonical_host
from routing.publish import ATTEMPTS, DEFAULT_PREFIX, STORE_IF_UNCHANGED_LUA, PublishContended
from routing.signing import (
    BAD_SIGNATURE,
    UNSIGNED,
    SignatureRefused,
    frame,
    key_id,
    sign,
    trusted_by_id,
    unframe,
    verify,
)
from routing.subscriber import _write_atomically
from routing.versions import MAX_VERSION, next_version

if TYPE_CHECKING:
    import redis
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "ACME_CHALLENGE_PATH",
    "CERTS",
    "CHALLENGES",
    "CertBundle",
    "CertEntry",
    "Challenges",
    "DocumentWatcher",
    "InvalidDocument",
    "Kind",
    "publish_document",
    "read_document",
]

logger = logging.getLogger(__name__)

ACME_CHALLENGE_PATH = "/.well-known/acme-challenge/"
MALFORMED = "malformed"
LOWER = "lower"
REFUSAL_REASONS = (UNSIGNED, BAD_SIGNATURE, MALFORMED, LOWER)
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
KEY_AUTHORIZATION_RE = re.compile(r"[A-Za-z0-9_-]{1,256}\.[A-Za-z0-9_-]{43}")


class InvalidDocument(ValueError):
    """A document that does not have the shape this module writes."""


@dataclass(frozen=True)
class Kind:
    name: str
    context: bytes
    max_bytes: int

    def key(self, prefix: str = DEFAULT_PREFIX) -> str:
        return f"{prefix}{self.name}"

    def signature_key(self, prefix: str = DEFAULT_PREFIX) -> str:
        return f"{prefix}{self.name}:sig"

    def channel(self, prefix: str = DEFAULT_PREFIX) -> str:
        return f"{prefix}{self.name}:changed"


CERTS = Kind("tls", b"certificate-bundle-v1\n", 256 * 1024 * 1024)
CHALLENGES = Kind("acme", b"acme-challenges-v1\n", 4 * 1024 * 1024)


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _loads(kind: Kind, raw: bytes) -> dict[str, Any]:
    if len(raw) > kind.max_bytes:
        raise InvalidDocument(f"the {kind.name} document is over {kind.max_bytes} bytes")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidDocument(f"the {kind.name} document is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidDocument(f"the {kind.name} document is not an object")
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= MAX_VERSION:
        raise InvalidDocument(f"the {kind.name} document's version {version!r} is not valid")
    return doc


def _domain(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidDocument(f"domain {value!r} is not a string")
    try:
        canonical = canonical_host(value)
    except InvalidHost as exc:
        raise InvalidDocument(f"domain {value!r}: {exc}") from None
    if canonical != value:
        raise InvalidDocument(f"domain {value!r} is not in canonical form ({canonical!r})")
    return value


@dataclass(frozen=True)
class CertEntry:
    """One app domain's certificate as the proxies install it."""

    domain: str
    chain: str  # leaf first, PEM
    key: str  # the private key sealed to the proxies (routing.sealed)
    not_after: str  # ISO 8601, UTC
    serial: str  # hex, lower case

    def as_dict(self) -> dict[str, str]:
        return {"chain": self.chain, "key": self.key, "not_after": self.not_after,
                "serial": self.serial}  # fmt: skip


@dataclass(frozen=True)
class CertBundle:
    version: int
    certificates: Mapping[str, CertEntry] = field(default_factory=dict)
    force_https: frozenset[str] = frozenset()

    @staticmethod
    def body(entries: Sequence[CertEntry], force_https: Sequence[str]) -> dict[str, Any]:
        """The content a publisher stores (the version is added by ``publish_document``)."""
        return {
            "certificates": {e.domain: e.as_dict() for e in entries},
            "force_https": sorted(set(force_https)),
        }

    @classmethod
    def from_bytes(cls, raw: bytes) -> CertBundle:
        doc = _loads(CERTS, raw)
        certificates = doc.get("certificates")
        force = doc.get("force_https")
        if not isinstance(certificates, dict) or not isinstance(force, list):
            raise InvalidDocument("a certificate bundle has 'certificates' and 'force_https'")
        entries = {}
        for domain, entry in certificates.items():
            _domain(domain)
            if not isinstance(entry, dict) or set(entry) != {"chain", "key", "not_after", "serial"}:
                raise InvalidDocument(f"the entry of {domain} has not the fields of an entry")
            if not all(isinstance(v, str) for v in entry.values()):
                raise InvalidDocument(f"the entry of {domain} has a field that is not a string")
            entries[domain] = CertEntry(domain=domain, **entry)
        return cls(
            version=doc["version"],
            certificates=entries,
            force_https=frozenset(_domain(d) for d in force),
        )


@dataclass(frozen=True)
class Challenges:
    version: int
    tokens: Mapping[str, str] = field(default_factory=dict)

    @staticmethod
    def body(tokens: Mapping[str, str]) -> dict[str, Any]:
        for token, answer in tokens.items():
            _check_token(token, answer)
        return {"tokens": dict(sorted(tokens.items()))}

    @classmethod
    def from_bytes(cls, raw: bytes) -> Challenges:
        doc = _loads(CHALLENGES, raw)
        tokens = doc.get("tokens")
        if not isinstance(tokens, dict):
            raise InvalidDocument("a challenge document has 'tokens'")
        for token, answer in tokens.items():
            _check_token(token, answer)
        return cls(version=doc["version"], tokens=dict(tokens))


def _check_token(token: object, answer: object) -> None:
    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
        raise InvalidDocument(f"challenge token {str(token)[:80]!r} is not base64url")
    if not isinstance(answer, str) or not KEY_AUTHORIZATION_RE.fullmatch(answer):
        raise InvalidDocument(f"the answer to token {token} is not a key authorization")
    if answer.split(".", 1)[0] != token:
        raise InvalidDocument(f"the answer to token {token} is for another token")


PARSERS: dict[str, Callable[[bytes], Any]] = {
    CERTS.name: CertBundle.from_bytes,
    CHALLENGES.name: Challenges.from_bytes,
}


def verified_document(
    kind: Kind, raw: bytes, line: bytes | None, trusted: dict[str, Ed25519PublicKey]
) -> tuple[Any, str]:
    """(the parsed document, its signer's key id); ``SignatureRefused`` or ``InvalidDocument``.
    The signature is checked before anything is parsed."""
    signer = verify(kind.context + raw, line, trusted)
    return PARSERS[kind.name](raw), signer


# --- writing ---------------------------------------------------------------------------------


def _expected(value: bytes | None) -> bytes:
    return b"" if value is None else b"=" + value


def read_document(
    client: redis.Redis,
    kind: Kind,
    prefix: str = DEFAULT_PREFIX,
    *,
    trusted_keys: Sequence[Ed25519PublicKey],
) -> Any | None:
    """The stored document of ``kind`` if it verifies and parses, else None."""
    raw, line = client.mget([kind.key(prefix), kind.signature_key(prefix)])
    if raw is None:
        return None
    try:
        return verified_document(kind, raw, line, trusted_by_id(trusted_keys))[0]
    except ValueError:
        return None


def publish_document(
    client: redis.Redis,
    kind: Kind,
    body: dict[str, Any],
    prefix: str = DEFAULT_PREFIX,
    *,
    signing_key: Ed25519PrivateKey,
    trusted_keys: Sequence[Ed25519PublicKey] | None = None,
    floor: int = 0,
    now: datetime | None = None,
) -> int | None:
    """Store ``body`` as the document of ``kind`` under a new version, unless Redis already
    holds a document that counts with the same body. Returns the version stored, or None when
    nothing changed. The new version is ``next_version(max(stored, floor), now)``.

    Callers serialise their publishes of one kind (the panel holds a database row lock), so
    that the body published last is the newest; the compare-and-set still keeps a racing
    writer from being overwritten unseen."""
    if "version" in body:
        raise ValueError("the body of a document has no 'version': publish_document adds it")
    own = key_id(signing_key.public_key())
    trusted = trusted_by_id(trusted_keys or (signing_key.public_key(),))
    if own not in trusted:
        raise ValueError(f"the signing key {own} is not among the trusted keys")
    script = client.register_script(STORE_IF_UNCHANGED_LUA)
    keys = [kind.key(prefix), kind.signature_key(prefix)]
    when = now or datetime.now(UTC)
    for _ in range(ATTEMPTS):
        raw, held_line = client.mget(keys)
        stored_version = 0
        if raw is not None:
            try:
                verified_document(kind, raw, held_line, trusted)
                stored = json.loads(raw)
            except ValueError:
                stored = None
            if stored is not None:
                stored_version = stored.pop("version")
                if stored == body:
                    return None
        version = next_version(max(stored_version, floor), when)
        data = _dumps({**body, "version": version})
        PARSERS[kind.name](data)  # never store what readers would refuse
        line = sign(kind.context + data, signing_key)
        args = [kind.channel(prefix), _expected(raw), _expected(held_line), data, line, version]
        if script(keys=keys, args=args):
            return version
    raise PublishContended(f"the {kind.name} document in Redis changed under {ATTEMPTS} publishes")


# --- reading (the proxies) -------------------------------------------------------------------

OnDocument = Callable[[Any], Awaitable[None] | None]


@dataclass
class KindState:
    held: Any = None
    raw: bytes | None = None
    line: bytes | None = None
    last_refused: tuple[bytes, bytes | None] | None = None
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REFUSAL_REASONS, 0))


class DocumentWatcher:
    """Holds the newest valid certificate bundle and challenge document found in Redis.

    One background task: SUBSCRIBE to both change channels, then MGET both documents and their
    signature lines, on every message and at least every ``poll_interval``; on any Redis error
    keep what is held, back off (bounded, with jitter) and reconnect. The certificate bundle is
    also kept in ``state_file`` (framed with its signature line, judged on load like a value
    from Redis), so a proxy started while Redis is down still presents its certificates.
    ``on_certs`` / ``on_challenges`` are called with each newly taken document (awaited, with
    ``callback_timeout``)."""

    def __init__(
        self,
        redis_url: str,
        prefix: str = DEFAULT_PREFIX,
        *,
        trusted_keys: Sequence[Ed25519PublicKey],
        on_certs: OnDocument | None = None,
        on_challenges: OnDocument | None = None,
        state_file: str | Path | None = None,
        poll_interval: float = 1.0,
        timeout: float = 2.0,
        callback_timeout: float = 60.0,
        backoff_max: float = 2.0,
    ) -> None:
        if poll_interval <= 0 or timeout <= 0:
            raise ValueError("poll_interval and timeout must be positive")
        self._trusted = trusted_by_id(trusted_keys)
        self.redis_url = redis_url
        self.prefix = prefix
        self.state_file = Path(state_file) if state_file else None
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.callback_timeout = callback_timeout
        self.backoff_max = backoff_max
        self.callbacks = {CERTS.name: on_certs, CHALLENGES.name: on_challenges}
        self.states = {CERTS.name: KindState(), CHALLENGES.name: KindState()}
        self.connected = False
        self.reads = 0
        self.last_error = ""
        self._task: asyncio.Task[None] | None = None
        self._first = asyncio.Event()
        self._changed = asyncio.Event()

    @property
    def certs(self) -> CertBundle | None:
        return self.states[CERTS.name].held

    @property
    def challenges(self) -> Challenges | None:
        return self.states[CHALLENGES.name].held

    async def start(self, wait: float | None = None) -> None:
        if self._task is not None:
            raise RuntimeError("watcher already started")
        await self._load_state_file()
        self._task = asyncio.create_task(self._run(), name=f"tls-watcher {self.prefix}")
        try:
            async with asyncio.timeout(self.timeout if wait is None else wait):
                await self._first.wait()
        except TimeoutError:
            logger.warning("tls watcher: Redis did not answer at start; still trying")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait({task}, timeout=self.timeout * 2 + self.poll_interval)
        self.connected = False

    async def wait_for(self, kind: Kind, version: int, timeout: float) -> Any:
        """Wait until the held document of ``kind`` has at least ``version``."""

        async def reached() -> Any:
            while (held := self.states[kind.name].held) is None or held.version < version:
                self._changed.clear()
                await self._changed.wait()
            return held

        async with asyncio.timeout(timeout):
            return await reached()

    async def _run(self) -> None:
        backoff = 0.05
        channels = [CERTS.channel(self.prefix), CHALLENGES.channel(self.prefix)]
        while True:
            client = async_client(self.redis_url, timeout=self.timeout)
            pubsub = client.pubsub()
            try:
                async with asyncio.timeout(self.timeout):
                    await pubsub.subscribe(*channels)
                    confirmed = 0
                    while confirmed < len(channels):
                        message = await pubsub.get_message(timeout=self.timeout)
                        if message is not None and message["type"] == "subscribe":
                            confirmed += 1
                self.connected = True
                await self._read(client)
                self._first.set()
                backoff = 0.05
                while True:
                    async with asyncio.timeout(self.poll_interval + self.timeout):
                        await pubsub.get_message(timeout=self.poll_interval)
                    await self._read(client)
            except (RedisError, OSError, TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self.connected:
                    logger.warning("tls watcher lost Redis: %s", self.last_error)
                self.connected = False
                self._first.set()
            finally:
                try:
                    async with asyncio.timeout(self.timeout):
                        await pubsub.aclose()
                        await client.aclose()
                except (RedisError, OSError, TimeoutError):
                    pass
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, self.backoff_max)

    async def _read(self, client) -> None:
        keys = []
        for kind in (CERTS, CHALLENGES):
            keys += [kind.key(self.prefix), kind.signature_key(self.prefix)]
        async with asyncio.timeout(self.timeout):
            values = await client.mget(keys)
        self.reads += 1
        for i, kind in enumerate((CERTS, CHALLENGES)):
            raw, line = values[2 * i], values[2 * i + 1]
            if raw is not None:
                await self._consider(kind, raw, line, "in Redis")

    def _refuse(self, kind: Kind, reason: str, value: tuple[bytes, bytes | None], why: str) -> None:
        state = self.states[kind.name]
        if state.last_refused == value:
            return
        state.last_refused = value
        state.refused[reason] += 1
        logger.warning("refused a %s document (%s): %s", kind.name, reason, why)

    async def _consider(self, kind: Kind, raw: bytes, line: bytes | None, where: str) -> bool:
        state = self.states[kind.name]
        if raw == state.raw and line == state.line:
            state.last_refused = None
            return False
        try:
            doc, _signer = verified_document(kind, raw, line, self._trusted)
        except SignatureRefused as exc:
            self._refuse(kind, exc.reason, (raw, line), f"{where}: {exc}")
            return False
        except ValueError as exc:
            self._refuse(kind, MALFORMED, (raw, line), f"{where}: {exc}")
            return False
        if state.held is not None and doc.version <= state.held.version:
            if doc.version < state.held.version:
                self._refuse(kind, LOWER, (raw, line), f"{where}: version {doc.version}, "
                             f"holding {state.held.version}")  # fmt: skip
            else:
                state.raw, state.line = raw, line
            return False
        callback = self.callbacks[kind.name]
        if callback is not None:
            try:
                result = callback(doc)
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    async with asyncio.timeout(self.callback_timeout):
                        await result
            except Exception:
                # Not taken: the next read tries again (the last good document stays in use).
                logger.exception("installing the %s document version %d failed", kind.name,
                                 doc.version)  # fmt: skip
                return False
        state.held, state.raw, state.line, state.last_refused = doc, raw, line, None
        self._changed.set()
        if kind is CERTS and self.state_file is not None and line is not None:
            try:
                await asyncio.to_thread(_write_atomically, self.state_file, frame(raw, line))
            except OSError as exc:
                logger.error("could not write tls state file %s: %s", self.state_file, exc)
        return True

    async def _load_state_file(self) -> None:
        if self.state_file is None:
            return
        try:
            data = await asyncio.to_thread(self.state_file.read_bytes)
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.error("could not read tls state file %s: %s", self.state_file, exc)
            return
        raw, line = unframe(data)
        await self._consider(CERTS, raw, line, f"in the state file {self.state_file}")

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"connected": self.connected, "reads": self.reads}
        for name, state in self.states.items():
            out[name] = {
                "version": state.held.version if state.held is not None else None,
                "refused": dict(state.refused),
            }
        return out
