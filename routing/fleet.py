"""The fleet: every proxy worker and node reports itself to Redis with a heartbeat that expires.

Record format and key names live here and nowhere else. One key per member, a JSON string
written with a TTL, so a member that dies or loses Redis disappears from the fleet on its own:

    <prefix>fleet:<role>:<name>   ->  {"name", "role", "address", "version", "table_age",
                                       "redis_connected", "down", "rps", "taken_at", "at",
                                       "misrouted_reloads", "isolation", "in_force",
                                       "certificates", "certs_not_after"}

Invariants:
- ``role`` is ``proxy`` or ``node``; ``name`` is unique within a role (a proxy worker is
  ``<proxy>/<worker>``, each worker holding its own table). A record names itself: a key whose
  record disagrees with its name is refused, as is any malformed record (counted by the reader).
- ``at`` is the writer's wall clock (seconds since the epoch) when it wrote the record;
  ``taken_at`` the wall clock when it took the table it holds (None before any). Convergence
  times compare them with the panel's clock: operators keep clocks in sync (NTP).
- A heartbeat is written every ``interval`` seconds and at once when the member takes a new
  table, with a TTL of ``ttl`` seconds (> ``interval``): absent means gone.
- A node says whether it sandboxes its apps (``isolation``, and its start-up lines in
  ``in_force``); a proxy with a TLS listener how many certificates it holds and the earliest
  ``not_after`` among them (``certs_not_after``, seconds since the epoch). None: not reported.
- Readers only SCAN and MGET (bounded: ``MAX_MEMBERS``); writers only SET their own key (with
  PX; a clean stop overwrites it with a 1 ms expiry instead of DEL). The Redis user of a member
  needs ``+set`` on its own key and nothing else under ``<prefix>fleet:`` (``member_pattern``).

Pure asyncio and redis-py, no Django.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.exceptions import RedisError

from routing.connect import async_client
from routing.publish import DEFAULT_PREFIX

logger = logging.getLogger(__name__)

ROLES = ("proxy", "node")
DEFAULT_INTERVAL = 5.0
DEFAULT_TTL = 15.0
MAX_MEMBERS = 10_000
MAX_RECORD_BYTES = 64 * 1024
MAX_DOWN = 1_000
MAX_IN_FORCE = 8  # start-up lines a node reports, each at most MAX_LINE characters
MAX_LINE = 500


def fleet_pattern(prefix: str = DEFAULT_PREFIX) -> str:
    """The key pattern of every heartbeat (for SCAN and for Redis ACL rules)."""
    return f"{prefix}fleet:*"


def member_key(role: str, name: str, prefix: str = DEFAULT_PREFIX) -> str:
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    # No glob characters (nor the escape): a key is also a literal ACL pattern (member_pattern).
    if not name or len(name) > 200 or any(c.isspace() or c in "*?[]\\" for c in name):
        raise ValueError(f"member name {name!r} must be 1-200 characters, no spaces or globs")
    return f"{prefix}fleet:{role}:{name}"


def member_pattern(role: str, name: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The keys the Redis user of member ``name`` may write: its own heartbeat, and for a proxy
    (whose workers report as ``<name>/<worker>``) its workers' ones."""
    key = member_key(role, name, prefix)
    return f"{key}/*" if role == "proxy" else key


class InvalidMember(ValueError):
    """A heartbeat record that is not one; the message says why."""


@dataclass(frozen=True)
class Member:
    """One member's report of itself (see the module docstring for the fields)."""

    name: str
    role: str
    address: str = ""
    version: int | None = None
    table_age: float | None = None
    redis_connected: bool = False
    down: tuple[str, ...] = ()
    rps: float = 0.0
    taken_at: float | None = None
    at: float = 0.0
    misrouted_reloads: int | None = None
    isolation: bool | None = None
    in_force: tuple[str, ...] = ()
    certificates: int | None = None
    certs_not_after: float | None = None

    def to_json(self) -> str:
        doc = asdict(self)
        doc["down"] = list(self.down)
        doc["in_force"] = list(self.in_force)
        return json.dumps(doc, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, data: str | bytes) -> Member:
        if len(data) > MAX_RECORD_BYTES:
            raise InvalidMember(f"record is {len(data)} bytes (at most {MAX_RECORD_BYTES})")
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidMember(f"record is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise InvalidMember("record is not a JSON object")
        try:
            return cls(
                name=_str(doc, "name", required=True),
                role=_role(doc),
                address=_str(doc, "address"),
                version=_int(doc, "version"),
                table_age=_number(doc, "table_age"),
                redis_connected=_bool(doc, "redis_connected"),
                down=_names(doc),
                rps=_number(doc, "rps") or 0.0,
                taken_at=_number(doc, "taken_at"),
                at=_number(doc, "at") or 0.0,
                misrouted_reloads=_int(doc, "misrouted_reloads"),
                isolation=_optional_bool(doc, "isolation"),
                in_force=_lines(doc),
                certificates=_int(doc, "certificates"),
                certs_not_after=_number(doc, "certs_not_after"),
            )
        except (TypeError, ValueError) as exc:
            raise InvalidMember(str(exc)) from None

    def seen_ago(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.at)


def _str(doc: dict, key: str, required: bool = False) -> str:
    value = doc.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise InvalidMember(f"{key} must be a non-empty string" if required else f"{key}: string")
    return value


def _role(doc: dict) -> str:
    role = doc.get("role")
    if role not in ROLES:
        raise InvalidMember(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return role


def _int(doc: dict, key: str) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidMember(f"{key} must be a non-negative integer or null, got {value!r}")
    return value


def _number(doc: dict, key: str) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidMember(f"{key} must be a finite number or null, got {value!r}")
    return float(value)


def _bool(doc: dict, key: str) -> bool:
    value = doc.get(key, False)
    if not isinstance(value, bool):
        raise InvalidMember(f"{key} must be true or false, got {value!r}")
    return value


def _optional_bool(doc: dict, key: str) -> bool | None:
    return None if doc.get(key) is None else _bool(doc, key)


def _lines(doc: dict) -> tuple[str, ...]:
    value = doc.get("in_force", [])
    if not isinstance(value, list) or len(value) > MAX_IN_FORCE:
        raise InvalidMember(f"in_force must be a list of at most {MAX_IN_FORCE} lines")
    if not all(isinstance(v, str) and len(v) <= MAX_LINE for v in value):
        raise InvalidMember(f"in_force must hold lines (strings of at most {MAX_LINE} characters)")
    return tuple(value)


def _names(doc: dict) -> tuple[str, ...]:
    value = doc.get("down", [])
    if not isinstance(value, list) or len(value) > MAX_DOWN:
        raise InvalidMember(f"down must be a list of at most {MAX_DOWN} backend names")
    if not all(isinstance(v, str) for v in value):
        raise InvalidMember("down must hold backend names (strings)")
    return tuple(value)


# --- reading the fleet (the panel) -------------------------------------------------------------


@dataclass(frozen=True)
class Fleet:
    """The members found in Redis, ordered by role then name, and the records refused."""

    members: tuple[Member, ...]
    refused: int = 0

    def of(self, role: str) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.role == role)


def read_fleet(client, prefix: str = DEFAULT_PREFIX) -> Fleet:
    """Every live heartbeat under ``prefix`` (a blocking redis-py client); raises RedisError."""
    keys: list[bytes] = []
    for key in client.scan_iter(match=fleet_pattern(prefix), count=500):
        keys.append(key)
        if len(keys) >= MAX_MEMBERS:
            break
    members, refused = [], 0
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        for key, value in zip(chunk, client.mget(chunk), strict=True):
            if not value:
                continue  # expired between SCAN and MGET, or a member's stop (see Heartbeat)
            try:
                member = Member.from_json(value)
                expected = member_key(member.role, member.name, prefix)
            except ValueError as exc:
                refused += 1
                logger.warning("fleet record %r refused: %s", key[:200], exc)
                continue
            if expected.encode() != key:
                refused += 1
                logger.warning("fleet record %r refused: it names %s", key[:200], expected)
                continue
            members.append(member)
    members.sort(key=lambda m: (ROLES.index(m.role), m.name))
    return Fleet(tuple(members), refused)


@dataclass(frozen=True)
class RoleCount:
    role: str
    holding: int
    total: int

    @property
    def plural(self) -> str:
        return "proxies" if self.role == "proxy" else "nodes"


@dataclass(frozen=True)
class Convergence:
    """How far ``version`` has reached: per role, and the time from ``since`` (the change's
    commit, wall clock) to the last member taking it, once every member holds it."""

    version: int
    counts: tuple[RoleCount, ...]
    elapsed_ms: int | None = None
    members: tuple[Member, ...] = field(default=(), repr=False)

    @property
    def converged(self) -> bool:
        return all(c.holding == c.total for c in self.counts) and any(c.total for c in self.counts)

    def line(self) -> str:
        """``3/3 proxies and 4/4 nodes hold version 12, 41 ms``."""
        parts = " and ".join(f"{c.holding}/{c.total} {c.plural}" for c in self.counts)
        verb = "holds" if sum(c.total for c in self.counts) == 1 else "hold"
        text = f"{parts} {verb} version {self.version}"
        if self.elapsed_ms is not None:
            text += f", {self.elapsed_ms} ms"
        return text


def holds(member: Member, version: int) -> bool:
    """Whether ``member`` holds ``version`` or a later one (versions only go up)."""
    return member.version is not None and member.version >= version


def convergence(members: Iterable[Member], version: int, since: float | None = None) -> Convergence:
    members = tuple(members)
    counts = tuple(
        RoleCount(
            role,
            sum(1 for m in members if m.role == role and holds(m, version)),
            sum(1 for m in members if m.role == role),
        )
        for role in ROLES
    )
    elapsed = None
    if since is not None and members and all(holds(m, version) for m in members):
        taken = [m.taken_at for m in members if m.taken_at is not None]
        if taken:
            elapsed = max(0, round((max(taken) - since) * 1000))
    return Convergence(version, counts, elapsed, members)


# --- writing one member's heartbeat (proxies and nodes) ------------------------------------------


class RateMeter:
    """Requests per second from a growing counter, over the time between two readings."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: tuple[float, int] | None = None

    def rate(self, total: int) -> float:
        now = self._clock()
        last, self._last = self._last, (now, total)
        if last is None or now <= last[0] or total < last[1]:
            return 0.0
        return round((total - last[1]) / (now - last[0]), 2)


Report = Callable[[], dict[str, Any]]


class Heartbeat:
    """Writes ``report()`` (a dict of ``Member`` fields besides name, role, taken_at and at)
    to the member's key every ``interval`` seconds and when ``table_taken`` is called.

    A Redis error is logged once per outage and retried at the next beat: a heartbeat never
    stops or slows the member it reports on. ``stop()`` removes the record (best effort) by
    overwriting it with an empty value that expires in 1 ms: a member's Redis user may SET its
    own key and nothing else (no DEL).
    """

    def __init__(
        self,
        redis_url: str,
        *,
        role: str,
        name: str,
        report: Report,
        prefix: str = DEFAULT_PREFIX,
        interval: float = DEFAULT_INTERVAL,
        ttl: float = DEFAULT_TTL,
        timeout: float = 2.0,
    ) -> None:
        if not 0 < interval < ttl:
            raise ValueError(f"heartbeat interval {interval} must be above 0 and below ttl {ttl}")
        self.key = member_key(role, name, prefix)
        self.role, self.name = role, name
        self.redis_url = redis_url
        self.report = report
        self.interval, self.ttl, self.timeout = interval, ttl, timeout
        self.taken_at: float | None = None
        self.beats = 0
        self._failing = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._client = None

    def table_taken(self, table: Any = None) -> None:
        """Call when the member takes a new table: the next beat is written at once."""
        self.taken_at = time.time()
        self._wake.set()

    def wake(self) -> None:
        """Write the next beat at once (something the record reports has changed)."""
        self._wake.set()

    def record(self) -> Member:
        fields = dict(self.report())
        return Member(
            name=self.name, role=self.role, taken_at=self.taken_at, at=time.time(), **fields
        )

    async def start(self) -> None:
        self._client = async_client(self.redis_url, timeout=self.timeout)
        self._task = asyncio.create_task(self._run(), name=f"heartbeat {self.key}")

    async def beat(self) -> bool:
        """Write one heartbeat now; whether Redis took it."""
        assert self._client is not None, "start() first"
        try:
            await asyncio.wait_for(
                self._client.set(self.key, self.record().to_json(), px=int(self.ttl * 1000)),
                self.timeout,
            )
        except (RedisError, OSError, TimeoutError) as exc:
            if not self._failing:
                logger.warning("heartbeat %s not written: %s", self.key, exc)
            self._failing = True
            # A command cut off by the timeout leaves its connection in an unknown state.
            with contextlib.suppress(RedisError, OSError):
                await self._client.connection_pool.disconnect()
            return False
        if self._failing:
            logger.info("heartbeat %s written again", self.key)
        self._failing = False
        self.beats += 1
        return True

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            await self.beat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await asyncio.wait_for(client.set(self.key, b"", px=1), self.timeout)
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()


__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_TTL",
    "ROLES",
    "Convergence",
    "Fleet",
    "Heartbeat",
    "InvalidMember",
    "Member",
    "RateMeter",
    "RoleCount",
    "convergence",
    "fleet_pattern",
    "holds",
    "member_key",
    "member_pattern",
    "read_fleet",
]
