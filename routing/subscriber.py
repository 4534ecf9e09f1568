"""Keeping the newest valid route table in memory: the helper proxies and nodes run.

Pure asyncio and redis-py, no Django. One background task per subscriber:

    connect -> SUBSCRIBE <prefix>routes:changed -> MGET <prefix>routes <prefix>routes:sig
            -> wait for a message, at most ``poll_interval`` -> MGET again -> ...
    on any Redis error: keep the table, wait a bounded, growing backoff, reconnect, MGET again.

Invariants:
- Every subscriber is given ``trusted_keys`` (one key, or two while rotating; there is no
  unchecked mode), and a table is taken only if its signature line verifies with one of them
  over exactly the bytes read (``routing.signing``). An unsigned or badly signed table is
  refused whatever its version: a writer to Redis without the private key cannot route anything
  anywhere.
- ``table`` only ever moves to a higher version (``routing.versions.supersedes``). A refused
  value (unsigned, badly signed, malformed or of a lower version: ``REFUSAL_REASONS``) is
  counted and logged once per distinct value, so a bad value sitting in Redis does not inflate
  the counters on every poll, and the last good table stays, in memory and on disk.
- Subscribing happens before the first read, so a change published in between is not missed;
  a message that is lost anyway costs at most ``poll_interval``.
- Every network wait has a timeout; a Redis that stops answering is treated as a lost
  connection, never as a reason to block.
- With a ``state_file``, every accepted table is written there atomically with its signature
  line (``routing.signing.frame``) and loaded at start, so a process that starts while Redis is
  unreachable still routes with the last table it saw. The file is judged like a value from
  Redis: an unsigned or tampered file is refused (counted, logged) and ignored. A refused table
  is never written to it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import random
import re
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from routing.connect import async_client
from routing.publish import DEFAULT_PREFIX, channel, signature_key, table_key
from routing.signing import (
    BAD_SIGNATURE,
    UNSIGNED,
    SignatureRefused,
    frame,
    trusted_by_id,
    unframe,
    verified_table,
)
from routing.table import RouteTable
from routing.versions import supersedes

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

logger = logging.getLogger(__name__)

OnChange = Callable[[RouteTable], Awaitable[None] | None]

MALFORMED = "malformed"
LOWER = "lower"
# Why a table was refused: the labels of the refusal counters (/metrics).
REFUSAL_REASONS = (UNSIGNED, BAD_SIGNATURE, MALFORMED, LOWER)
_CLAIMED_VERSION = re.compile(rb'\s*\{\s*"version"\s*:\s*(\d{1,20})')


@dataclass(frozen=True)
class SubscriberStats:
    """A snapshot of a subscriber's health, for /healthz, /metrics and logs.

    ``age`` is the number of seconds since Redis last confirmed the held table (held the same
    version); None while there is no table or Redis has not confirmed it yet (a table from the
    state file). It grows while Redis is down, empty or holds junk.
    ``refused`` counts refused tables (from Redis or the state file) by reason, every reason of
    ``REFUSAL_REASONS`` present; ``rejected`` is their sum, and ``malformed``, ``lower``,
    ``unsigned`` and ``bad_signature`` its parts. ``reads`` counts the reads Redis answered.
    ``verified`` is always True (signatures are always checked; kept for readers of the stats);
    ``signer`` is the key id that signed the held table (None while no table is held).
    """

    connected: bool
    version: int | None
    age: float | None
    rejected: int
    malformed: int
    lower: int
    missing: bool
    reconnects: int
    reads: int
    source: str | None
    last_error: str
    unsigned: int = 0
    bad_signature: int = 0
    refused: Mapping[str, int] = field(default_factory=dict)
    verified: bool = True
    signer: str | None = None


class RouteSubscriber:
    """Holds the newest valid :class:`RouteTable` found in Redis; see the module docstring."""

    def __init__(
        self,
        redis_url: str,
        prefix: str = DEFAULT_PREFIX,
        state_file: str | os.PathLike[str] | None = None,
        poll_interval: float = 1.0,
        on_change: OnChange | None = None,
        *,
        trusted_keys: Sequence[Ed25519PublicKey],
        timeout: float = 2.0,
        backoff_initial: float = 0.05,
        backoff_max: float = 2.0,
    ) -> None:
        if poll_interval <= 0 or timeout <= 0:
            raise ValueError("poll_interval and timeout must be positive")
        # Checked here, so a bad configuration fails at start, not at the first table.
        self._trusted = trusted_by_id(trusted_keys)
        self.redis_url = redis_url
        self.prefix = prefix
        self.state_file = Path(state_file) if state_file is not None else None
        self.poll_interval = poll_interval
        self.on_change = on_change
        self.timeout = timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max

        # The newest valid table seen (from Redis or the state file), or None. A plain
        # attribute: the proxy reads it for every request.
        self.table: RouteTable | None = None
        self._source: str | None = None
        self._confirmed_at: float | None = None
        self._connected = False
        self._missing = False
        # Refused tables by reason; read through ``stats`` (a copy) or directly.
        self.refused: dict[str, int] = dict.fromkeys(REFUSAL_REASONS, 0)
        self._last_rejected: tuple[bytes, bytes | None] | None = None
        # The Redis bytes of the table held, and its signature line and signer.
        self._held_raw: bytes | None = None
        self._held_line: bytes | None = None
        self._signer: str | None = None
        self._reconnects = 0
        self._reads = 0
        self._last_error = ""
        self._task: asyncio.Task[None] | None = None
        self._saving: asyncio.Future[None] | None = None
        self._stopping = False
        self._changed = asyncio.Event()
        self._first_attempt = asyncio.Event()

    # --- public surface -------------------------------------------------------------------

    @property
    def stats(self) -> SubscriberStats:
        age = None
        if self.table is not None and self._confirmed_at is not None:
            age = time.monotonic() - self._confirmed_at
        refused = dict(self.refused)
        return SubscriberStats(
            connected=self._connected,
            version=self.table.version if self.table is not None else None,
            age=age,
            rejected=sum(refused.values()),
            malformed=refused[MALFORMED],
            lower=refused[LOWER],
            missing=self._missing,
            reconnects=self._reconnects,
            reads=self._reads,
            source=self._source,
            last_error=self._last_error,
            unsigned=refused[UNSIGNED],
            bad_signature=refused[BAD_SIGNATURE],
            refused=refused,
            verified=True,
            signer=self._signer,
        )

    async def start(self, wait: float | None = None) -> None:
        """Load the state file, start the background task and wait for its first read.

        Waits at most ``wait`` seconds (default: ``timeout``) for the first attempt to reach
        Redis; returns either way, so a process can start while Redis is down.
        """
        if self._task is not None:
            raise RuntimeError("subscriber already started")
        self._stopping = False
        self._first_attempt.clear()
        if self._load_state_file():
            await self._notify(self.table)
        self._task = asyncio.create_task(self._run(), name=f"route-subscriber {self.prefix}")
        try:
            async with asyncio.timeout(self.timeout if wait is None else wait):
                await self._first_attempt.wait()
        except TimeoutError:
            logger.warning("route subscriber: Redis did not answer at start; still trying")

    async def stop(self) -> None:
        """Stop the background task and close its connections."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        task.cancel()
        # asyncio.wait neither raises the task's CancelledError nor swallows our own.
        await asyncio.wait({task}, timeout=self.timeout * 2 + self.poll_interval)
        if not task.done():
            logger.error("route subscriber did not stop in time")
        saving, self._saving = self._saving, None
        if saving is not None:
            await asyncio.wait({saving}, timeout=self.timeout)
        self._connected = False

    async def wait_for_version(self, version: int, timeout: float) -> RouteTable:
        """Wait until the held table's version is at least ``version``; TimeoutError otherwise."""

        async def reached() -> RouteTable:
            while self.table is None or self.table.version < version:
                self._changed.clear()
                await self._changed.wait()
            return self.table

        async with asyncio.timeout(timeout):
            return await reached()

    # --- the loop -------------------------------------------------------------------------

    def _client(self) -> aioredis.Redis:
        # No retries inside redis-py (routing.connect's default): the loop below owns
        # reconnecting and its backoff.
        return async_client(self.redis_url, timeout=self.timeout)

    async def _run(self) -> None:
        backoff = self.backoff_initial
        # asyncio.timeout() rather than wait_for(): on Python 3.11, wait_for() can swallow a
        # cancellation that arrives as the awaited call completes, and stop() would never return.
        while not self._stopping:
            client = self._client()
            pubsub = client.pubsub()
            try:
                async with asyncio.timeout(self.timeout):
                    await pubsub.subscribe(channel(self.prefix))
                    # The GET below goes over another connection: only once Redis confirms the
                    # subscription is every later change sure to be announced to us.
                    while True:
                        confirmation = await pubsub.get_message(timeout=self.timeout)
                        if confirmation is not None and confirmation["type"] == "subscribe":
                            break
                self._connected = True
                await self._read(client)
                self._first_attempt.set()
                backoff = self.backoff_initial
                while not self._stopping:
                    # A message or the poll interval passing without one: read the table either
                    # way; the message's version number is only a hint, Redis holds the truth.
                    async with asyncio.timeout(self.poll_interval + self.timeout):
                        await pubsub.get_message(timeout=self.poll_interval)
                    await self._read(client)
            except (RedisError, OSError, TimeoutError) as exc:
                self._last_error = f"{type(exc).__name__}: {exc}"
                if self._connected:
                    logger.warning("route subscriber lost Redis: %s", self._last_error)
                self._connected = False
                self._reconnects += 1
                self._first_attempt.set()
            finally:
                await self._close(client, pubsub)
            # Jitter keeps many proxies from reconnecting in lock-step after a Redis restart.
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, self.backoff_max)

    async def _close(self, client: aioredis.Redis, pubsub: aioredis.client.PubSub) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await pubsub.aclose()
                await client.aclose()
        except (RedisError, OSError, TimeoutError) as exc:
            logger.debug("route subscriber: closing the connection failed: %s", exc)

    async def _read(self, client: aioredis.Redis) -> bool:
        async with asyncio.timeout(self.timeout):
            # One MGET: the table and its signature line as one atomic snapshot.
            raw, line = await client.mget([table_key(self.prefix), signature_key(self.prefix)])
        self._reads += 1
        if raw is None:
            if not self._missing and self.table is not None:
                logger.warning(
                    "route table missing from Redis; keeping version %d", self.table.version
                )
            self._missing = True
            return False
        self._missing = False
        return await self._consider(raw, line)

    def _judge(self, raw: bytes, line: bytes | None, where: str) -> tuple[RouteTable, str] | None:
        """(the table in ``raw``, the key id that signed it) if its signature and its content
        pass; else None, counted and logged once per distinct value."""
        try:
            table, signer = verified_table(raw, line, self._trusted)
        except SignatureRefused as exc:
            self._refuse(exc.reason, (raw, line), f"{where}: {exc}{_claims(raw)}")
            return None
        except ValueError as exc:
            self._refuse(MALFORMED, (raw, line), f"{where}: {exc}")
            return None
        return table, signer

    def _refuse(self, reason: str, value: tuple[bytes, bytes | None], message: str) -> None:
        if value == self._last_rejected:
            return
        self._last_rejected = value
        self.refused[reason] += 1
        logger.warning("refused a route table (%s) %s", reason, message)

    async def _consider(self, raw: bytes, line: bytes | None) -> bool:
        if raw == self._held_raw and line == self._held_line:
            # The table held, unchanged (the usual poll): confirmed without checking it again.
            self._last_rejected = None
            self._confirmed_at = time.monotonic()
            self._source = "redis"
            return False
        judged = self._judge(raw, line, "in Redis")
        if judged is None:
            return False
        table, signer = judged
        current = self.table
        if current is not None and not supersedes(table.version, current.version):
            if table.version < current.version:
                self._refuse(
                    LOWER,
                    (raw, line),
                    f"in Redis: version {table.version}, holding {current.version}",
                )
                return False
            # The same version: Redis confirms the table held.
            self._last_rejected = None
            resigned = raw == self._held_raw and signer != self._signer
            self._held_raw, self._held_line, self._signer = raw, line, signer
            self._confirmed_at = time.monotonic()
            self._source = "redis"
            if resigned and line is not None:
                # The same bytes under another trusted key (a rotation): keep the new signature
                # on disk too, so the file stays valid once the old key is no longer trusted.
                await self._save(raw, line)
            return False
        self._last_rejected = None
        await self._accept(table, raw, line, signer)
        return True

    async def _accept(
        self, table: RouteTable, raw: bytes, line: bytes | None, signer: str | None
    ) -> None:
        self.table = table
        self._held_raw, self._held_line, self._signer = raw, line, signer
        self._source = "redis"
        self._confirmed_at = time.monotonic()
        self._changed.set()
        await self._save(raw, line)
        await self._notify(table)

    async def _save(self, raw: bytes, line: bytes | None) -> None:
        if self.state_file is None:
            return
        if line is None:
            return  # never reached: only signed tables are taken
        data = frame(raw, line)
        # The write runs on in its thread even if this task is cancelled; stop() waits for it,
        # so a stopped subscriber has the last table it accepted on disk.
        write = asyncio.ensure_future(asyncio.to_thread(_write_atomically, self.state_file, data))
        write.add_done_callback(self._written)
        self._saving = write
        try:
            async with asyncio.timeout(self.timeout):
                await asyncio.shield(write)
        except OSError:
            pass  # logged by _written, which sees every outcome
        except TimeoutError:
            logger.error(
                "writing route state file %s takes over %ss", self.state_file, self.timeout
            )

    def _written(self, write: asyncio.Future[None]) -> None:
        if not write.cancelled() and write.exception() is not None:
            logger.error(
                "could not write route state file %s: %r", self.state_file, write.exception()
            )

    async def _notify(self, table: RouteTable | None) -> None:
        if self.on_change is None or table is None:
            return
        try:
            result = self.on_change(table)
            if inspect.isawaitable(result):
                # A callback that hangs must not stop the subscriber from following Redis.
                async with asyncio.timeout(self.timeout):
                    await result
        except Exception:
            # The subscriber must outlive a faulty callback; the traceback goes to the log.
            logger.exception("route subscriber on_change callback failed")

    def _load_state_file(self) -> bool:
        """Take the table kept in the state file, if any; True when one was taken."""
        if self.state_file is None:
            return False
        try:
            raw = self.state_file.read_bytes()
        except FileNotFoundError:
            return False
        except OSError as exc:
            logger.error("could not read route state file %s: %s", self.state_file, exc)
            return False
        data, line = unframe(raw)
        judged = self._judge(data, line, f"in the state file {self.state_file}")
        if judged is None:
            logger.error("ignored the route state file %s", self.state_file)
            return False
        self.table, self._signer = judged
        # Redis holding these very bytes confirms them without a second check; the same bytes
        # under another trusted key (a rotation) rewrite the file (see _consider).
        self._held_raw, self._held_line = data, line
        self._source = "state-file"
        self._changed.set()
        return True


def _claims(raw: bytes) -> str:
    """What an unverified value says its version is, for the log: read from its first bytes,
    never parsed (nothing unsigned is parsed) and never trusted."""
    found = _CLAIMED_VERSION.match(raw[:64])
    return f" (it claims version {found.group(1).decode()})" if found else ""


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
