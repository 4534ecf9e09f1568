"""Which app a canonical host belongs to, as seen by a node: the panel, a user's app, or none.

The node knows no database: ``lookup`` is a plain blocking callable, canonical domain ->
``AppSpec`` or None, handed in by whoever starts the node (``manage.py runnode`` passes one
that reads the ``WebApp`` table; tests pass a dict's ``get``). Lookups run in one worker thread
and are cached briefly, answers "no such app" included. Requests for a host whose lookup is under
way share it, and an entry that has just expired (less than ``cache_seconds`` ago) is still
answered while one lookup refreshes it: a burst of requests costs one lookup, and no request of
a busy app waits for the database. A reload always reads fresh, because it usually follows a
change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from webapps.node.spec import AppSpec

DEFAULT_CACHE_SECONDS = 2.0
MAX_CACHE_ENTRIES = 10_000

# canonical domain -> the app with that domain (``AppSpec.enabled`` says whether it is served), or
# None; blocking, run in a thread.
Lookup = Callable[[str], AppSpec | None]


class AppDirectory:
    def __init__(
        self,
        *,
        system: dict[str, AppSpec],
        lookup: Lookup,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.system = dict(system)
        self.lookup = lookup
        self.cache_seconds = cache_seconds
        self.clock = clock
        # key -> (expires, app or None, the lookup's sequence number)
        self._cache: dict[str, tuple[float, AppSpec | None, int]] = {}
        self._pending: dict[str, asyncio.Future] = {}  # key -> the lookup under way
        self._started = 0  # lookups started: a later one's answer is never replaced by an earlier
        # One thread: one database connection behind the lookup, and lookups never pile up.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="node-db")

    def cached(self, key: str) -> tuple[bool, AppSpec | None]:
        """``(True, app or None)`` when known without a query, else ``(False, None)``.

        An entry that expired less than ``cache_seconds`` ago still counts as known; it starts
        a refresh (one per key), whose answer the next requests get.
        """
        if key in self.system:
            return True, self.system[key]
        hit = self._cache.get(key)
        if hit is not None:
            expires = hit[0]
            now = self.clock()
            if expires > now:
                return True, hit[1]
            if expires + self.cache_seconds > now:
                self._lookup(key, shared=True)
                return True, hit[1]
        return False, None

    async def get(self, key: str, *, fresh: bool = False) -> AppSpec | None:
        """The app for a canonical host (``routing.canonical_host``), or None."""
        if key in self.system:
            return self.system[key]
        if not fresh:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > self.clock():
                return hit[1]
        # shield: a request that goes away does not cancel a lookup others wait for
        return await asyncio.shield(self._lookup(key, shared=not fresh))

    def _lookup(self, key: str, *, shared: bool) -> asyncio.Future:
        """The lookup of ``key`` under way when ``shared`` and there is one, else a new one.

        A fresh read (``shared=False``) never joins one that may have started before a change.
        """
        pending = self._pending.get(key)
        if shared and pending is not None:
            return pending
        loop = asyncio.get_running_loop()
        self._started += 1
        number = self._started
        future = loop.run_in_executor(self._executor, self.lookup, key)
        self._pending[key] = future
        future.add_done_callback(lambda done: self._store(key, number, done))
        return future

    def _store(self, key: str, number: int, done: asyncio.Future) -> None:
        if self._pending.get(key) is done:
            del self._pending[key]
        if done.cancelled() or done.exception() is not None:
            return  # its waiters get the error; nothing is cached
        hit = self._cache.get(key)
        if hit is not None and hit[2] > number:
            return  # a lookup that started later has answered already
        if hit is None and len(self._cache) >= MAX_CACHE_ENTRIES:
            self._cache.pop(next(iter(self._cache)))  # the oldest entry
        self._cache.pop(key, None)
        self._cache[key] = (self.clock() + self.cache_seconds, done.result(), number)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
