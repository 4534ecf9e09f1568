"""Which app a canonical host belongs to, as seen by a node: the panel, a user's app, or none.

The node knows no database: ``lookup`` is a plain blocking callable, canonical domain ->
``AppSpec`` or None, handed in by whoever starts the node (``manage.py runnode`` passes one
that reads the ``WebApp`` table; tests pass a dict's ``get``). Lookups run in one worker thread
and are cached briefly, answers "no such app" included, so a burst of requests costs one lookup.
A reload always reads fresh, because it usually follows a change.
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
        self._cache: dict[str, tuple[float, AppSpec | None]] = {}
        # One thread: one database connection behind the lookup, and lookups never pile up.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="node-db")

    def cached(self, key: str) -> tuple[bool, AppSpec | None]:
        """``(True, app or None)`` when known without a query, else ``(False, None)``."""
        if key in self.system:
            return True, self.system[key]
        hit = self._cache.get(key)
        if hit is not None and hit[0] > self.clock():
            return True, hit[1]
        return False, None

    async def get(self, key: str, *, fresh: bool = False) -> AppSpec | None:
        """The app for a canonical host (``routing.canonical_host``), or None."""
        if key in self.system:
            return self.system[key]
        now = self.clock()
        if not fresh:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        loop = asyncio.get_running_loop()
        spec = await loop.run_in_executor(self._executor, self.lookup, key)
        if len(self._cache) >= MAX_CACHE_ENTRIES:
            self._cache.pop(next(iter(self._cache)))  # the oldest entry
        self._cache.pop(key, None)
        self._cache[key] = (self.clock() + self.cache_seconds, spec)
        return spec

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
