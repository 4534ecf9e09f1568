"""The node's app directory: one lookup per burst, and a just-expired entry served while it is
refreshed (so requests of a busy app never wait for the database)."""

from __future__ import annotations

import asyncio
import threading

from webapps.node.directory import AppDirectory
from webapps.node.spec import AppSpec


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Lookup:
    """A blocking lookup that counts its calls and, while ``gate`` is clear, waits on it."""

    def __init__(self) -> None:
        self.calls = 0
        self.version = 0
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, key: str) -> AppSpec | None:
        self.calls += 1
        if not self.gate.wait(10):
            raise TimeoutError("the test never opened the gate")
        return AppSpec(name=key, source_directory=f"/v{self.version}")


def directory(lookup: Lookup, clock: Clock) -> AppDirectory:
    return AppDirectory(system={}, lookup=lookup, cache_seconds=2.0, clock=clock)


def test_concurrent_requests_share_one_lookup():
    lookup, clock = Lookup(), Clock()
    d = directory(lookup, clock)

    async def main():
        lookup.gate.clear()
        waiters = [asyncio.ensure_future(d.get("a.test")) for _ in range(16)]
        await asyncio.sleep(0)
        lookup.gate.set()
        return await asyncio.gather(*waiters)

    try:
        specs = asyncio.run(main())
    finally:
        d.close()
    assert lookup.calls == 1
    assert {s.source_directory for s in specs} == {"/v0"}


def test_a_just_expired_entry_is_answered_while_one_refresh_runs():
    lookup, clock = Lookup(), Clock()
    d = directory(lookup, clock)

    async def main():
        await d.get("a.test")
        lookup.version = 1
        clock.now += 2.5  # expired 0.5 s ago: within the window
        lookup.gate.clear()
        seen = [d.cached("a.test") for _ in range(5)]
        lookup.gate.set()
        fresh = await d.get("a.test")  # joins the refresh under way
        return seen, fresh, d.cached("a.test")

    try:
        seen, fresh, after = asyncio.run(main())
    finally:
        d.close()
    assert seen == [(True, seen[0][1])] * 5 and seen[0][1].source_directory == "/v0"
    assert lookup.calls == 2  # the first read, then one refresh for all five
    assert fresh.source_directory == "/v1"
    assert after[0] and after[1].source_directory == "/v1"


def test_an_entry_expired_longer_ago_is_not_known():
    lookup, clock = Lookup(), Clock()
    d = directory(lookup, clock)

    async def main():
        await d.get("a.test")
        clock.now += 4.5  # expired 2.5 s ago: beyond cache_seconds more
        return d.cached("a.test")

    try:
        assert asyncio.run(main()) == (False, None)
    finally:
        d.close()
    assert lookup.calls == 1  # and it started no refresh: the request's own lookup will


def test_a_fresh_read_does_not_join_a_lookup_under_way():
    lookup, clock = Lookup(), Clock()
    d = directory(lookup, clock)

    async def main():
        lookup.gate.clear()
        shared = asyncio.ensure_future(d.get("a.test"))
        await asyncio.sleep(0)
        lookup.version = 1  # the change a reload follows
        fresh = asyncio.ensure_future(d.get("a.test", fresh=True))
        await asyncio.sleep(0)
        lookup.gate.set()
        return await shared, await fresh

    try:
        _, fresh = asyncio.run(main())
    finally:
        d.close()
    assert lookup.calls == 2
    assert fresh.source_directory == "/v1"


def test_a_failed_lookup_is_not_cached():
    clock = Clock()
    calls = []

    def failing(key: str) -> AppSpec | None:
        calls.append(key)
        raise OSError("database is locked")

    d = AppDirectory(system={}, lookup=failing, cache_seconds=2.0, clock=clock)

    async def main():
        for _ in range(2):
            try:
                await d.get("a.test")
            except OSError as exc:
                assert "locked" in str(exc)
            else:
                raise AssertionError("the lookup's error did not reach the caller")
        return d.cached("a.test")

    try:
        assert asyncio.run(main()) == (False, None)
    finally:
        d.close()
    assert len(calls) == 2
