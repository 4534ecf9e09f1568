"""The route table: an immutable snapshot of the pool, and the one routing function over it.

Invariants (tests in tests/routing/ hold this module to them):

1. A ``RouteTable`` never changes after construction; a new pool state is a new table with a
   higher ``version`` (0 to 2**53 - 1; how versions are chosen: ``routing.versions``).
   ``from_json(t.to_json()) == t``.
2. Only ``active`` backends receive keys; ``draining`` and ``disabled`` ones stay listed (so
   readers can show them) but are never chosen.
3. The choice is weighted rendezvous hashing (highest random weight), the ``-weight / ln(u)``
   form. For key ``k`` and backend ``b``::

       seed(b)  = xxh3_64(utf8(b.name))                       # identity, never position
       h(k, b)  = xxh3_64(utf8(k), seed=seed(b))
       u(k, b)  = ((h >> 12) + 0.5) / 2**52                   # exact in a double, 0 < u < 1
       score    = -b.weight / ln(u)

   Backends rank by score (highest first), ties by ``h`` (highest first), then by name
   (lowest first). ``backend_for(k)`` is the first of ``ranking(k)``. Nothing depends on
   Python's salted ``hash()``, the order of the backend list, or the process.
4. Minimal disruption follows from 3: adding a backend moves only keys to it, removing one
   moves only its keys, re-weighting one moves keys only to or from it.
5. Lookups are memoised per table in bounded memos; a memo never changes an answer.

Pure: no I/O, no settings, no Django, no Redis.
"""

from __future__ import annotations

import heapq
import json
import math
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from itertools import repeat
from typing import Any

from xxhash import xxh3_64_intdigest

from routing.addresses import InvalidAddress, parse_address
from routing.versions import MAX_VERSION

__all__ = ["ALGORITHM", "STATES", "Backend", "InvalidTable", "RouteTable", "score"]

ALGORITHM = "rendezvous-xxh3-v1"
STATES = ("active", "draining", "disabled")
MAX_BACKENDS = 100_000
MAX_WEIGHT = 1_000_000
MAX_NAME_LENGTH = 255
# A table of MAX_BACKENDS entries is a few MB of JSON; anything far beyond is not a table.
MAX_JSON_BYTES = 64 * 1024 * 1024
# Memo bounds: keys for backend_for, and backends referenced by memoised rankings.
MEMO_KEYS = 100_000
RANKING_MEMO_ENTRIES = 2_000_000

_U_SCALE = 2.0**-52
_MISSING = object()
_NAME = re.compile(r"[^\s\x00-\x1f\x7f]+")
_TOP_KEYS = ("version", "algorithm", "backends", "published_at")
_BACKEND_KEYS = ("name", "address", "weight", "state")


class InvalidTable(ValueError):
    """A route table (or backend) that must not be used; the message says why."""


def _seed(name: str) -> int:
    return xxh3_64_intdigest(name.encode("utf-8"))


def score(key: str, name: str, weight: int) -> tuple[float, int]:
    """(score, h) of backend ``name`` with ``weight`` for ``key``: the definition in invariant 3."""
    h = xxh3_64_intdigest(key.encode("utf-8"), _seed(name))
    return -weight / math.log(((h >> 12) + 0.5) * _U_SCALE), h


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Backend:
    """One backend server of the pool. ``address`` is ``host:port``."""

    name: str
    address: str
    weight: int = 1
    state: str = "active"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise InvalidTable(
                f"backend name {self.name!r} must be a non-empty string without whitespace or "
                "control characters"
            )
        if len(self.name) > MAX_NAME_LENGTH:
            raise InvalidTable(
                f"backend name {self.name[:20]!r}... is longer than {MAX_NAME_LENGTH} characters"
            )
        _check_address(self.name, self.address)
        if not _is_int(self.weight) or not 1 <= self.weight <= MAX_WEIGHT:
            raise InvalidTable(
                f"backend {self.name!r}: weight {self.weight!r} must be an integer from 1 to "
                f"{MAX_WEIGHT}"
            )
        if self.state not in STATES:
            raise InvalidTable(
                f"backend {self.name!r}: state {self.state!r} must be one of {', '.join(STATES)}"
            )

    @property
    def active(self) -> bool:
        return self.state == "active"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "weight": self.weight,
            "state": self.state,
        }


def _check_address(name: str, address: object) -> None:
    if not isinstance(address, str):
        raise InvalidTable(f"backend {name!r}: address {address!r} must be a 'host:port' string")
    problem = _address_problem(address)
    if problem is not None:
        raise InvalidTable(f"backend {name!r}: address {address!r} {problem}")


# Every new table version repeats most addresses: remembering verdicts keeps re-reading a large
# table cheap. Bounded by the largest table.
@lru_cache(maxsize=MAX_BACKENDS)
def _address_problem(address: str) -> str | None:
    try:
        parse_address(address)
    except InvalidAddress as exc:
        return str(exc).removeprefix(f"address {address!r} ")
    return None


@dataclass(frozen=True)
class _Group:
    """Active backends of one weight, sorted by name, with their precomputed seeds."""

    weight: int
    backends: tuple[Backend, ...]
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class RouteTable:
    """An immutable snapshot of the pool: see the module's invariants."""

    version: int
    algorithm: str
    backends: tuple[Backend, ...]
    published_at: str | None = None
    _by_name: dict[str, Backend] = field(init=False, repr=False, compare=False)
    _active: tuple[Backend, ...] = field(init=False, repr=False, compare=False)
    _groups: tuple[_Group, ...] = field(init=False, repr=False, compare=False)
    _by_name_active: tuple[Backend, ...] = field(init=False, repr=False, compare=False)
    _seeds: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _weights: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _memo: dict[str, Backend | None] = field(init=False, repr=False, compare=False)
    _ranking_memo: dict[str | tuple[str, int], tuple[Backend, ...]] = field(
        init=False, repr=False, compare=False
    )
    _lock: threading.Lock = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _is_int(self.version) or self.version < 0:
            raise InvalidTable(f"version {self.version!r} must be a non-negative integer")
        if self.version > MAX_VERSION:
            raise InvalidTable(f"version {self.version} is above {MAX_VERSION} (2**53 - 1)")
        if self.algorithm != ALGORITHM:
            raise InvalidTable(
                f"unknown algorithm {self.algorithm!r} (this code implements {ALGORITHM!r})"
            )
        if isinstance(self.backends, list):
            object.__setattr__(self, "backends", tuple(self.backends))
        if not isinstance(self.backends, tuple):
            raise InvalidTable("backends must be a tuple of Backend")
        if len(self.backends) > MAX_BACKENDS:
            raise InvalidTable(f"{len(self.backends)} backends (at most {MAX_BACKENDS})")
        by_name: dict[str, Backend] = {}
        for backend in self.backends:
            if not isinstance(backend, Backend):
                raise InvalidTable(f"backends must be Backend instances, got {backend!r}")
            if backend.name in by_name:
                raise InvalidTable(f"duplicate backend name {backend.name!r}")
            by_name[backend.name] = backend
        if self.published_at is not None:
            _check_timestamp(self.published_at)
        active = tuple(b for b in self.backends if b.active)
        seeds = {b.name: _seed(b.name) for b in active}
        weights = sorted({b.weight for b in active})
        groups = []
        for weight in weights:
            members = tuple(sorted((b for b in active if b.weight == weight), key=_name_key))
            groups.append(_Group(weight, members, tuple(seeds[b.name] for b in members)))
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_active", active)
        object.__setattr__(self, "_groups", tuple(groups))
        by_name_active = tuple(sorted(active, key=_name_key))
        object.__setattr__(self, "_by_name_active", by_name_active)
        object.__setattr__(self, "_seeds", tuple(seeds[b.name] for b in by_name_active))
        object.__setattr__(self, "_weights", tuple(b.weight for b in by_name_active))
        object.__setattr__(self, "_memo", {})
        object.__setattr__(self, "_ranking_memo", {})
        object.__setattr__(self, "_lock", threading.Lock())

    # -- reading -------------------------------------------------------------------------

    @property
    def active(self) -> tuple[Backend, ...]:
        """Active backends, in table order."""
        return self._active

    def backend(self, name: str) -> Backend | None:
        return self._by_name.get(name)

    def backend_for(self, key: str) -> Backend | None:
        """The backend that serves canonical ``key``; None when no backend is active."""
        chosen = self._memo.get(key, _MISSING)
        if chosen is not _MISSING:
            return chosen  # type: ignore[return-value]
        chosen = self._choose(key)
        with self._lock:
            memo = self._memo
            if len(memo) >= MEMO_KEYS:
                # Oldest first: dicts keep insertion order, so eviction is O(1).
                del memo[next(iter(memo))]
            memo[key] = chosen
        return chosen

    def ranking(self, key: str, limit: int | None = None) -> tuple[Backend, ...]:
        """Active backends for canonical ``key``, best first (the fallback order); with
        ``limit``, only the first ``limit`` of them (cheaper for large pools)."""
        n = len(self._active)
        size = n if limit is None else max(0, min(limit, n))
        memo_key: str | tuple[str, int] = key if size == n else (key, size)
        cached = self._ranking_memo.get(memo_key)
        if cached is not None:
            return cached
        ranked = self._rank(key, size)
        # Bounds the backends referenced from the memo at about 2 * RANKING_MEMO_ENTRIES.
        bound = max(1, RANKING_MEMO_ENTRIES // max(1, size))
        with self._lock:
            memo = self._ranking_memo
            while len(memo) >= bound:
                del memo[next(iter(memo))]
            memo[memo_key] = ranked
        return ranked

    def _choose(self, key: str) -> Backend | None:
        # Within one weight the score is monotonic in h, so the group's best is its highest h
        # (ties: the lowest name, which sorts first); only one score per weight is computed.
        data = key.encode("utf-8")
        groups = self._groups
        if len(groups) == 1:  # one weight: the highest h wins, no logarithm needed
            group = groups[0]
            hashes = list(map(xxh3_64_intdigest, repeat(data), group.seeds))
            return group.backends[hashes.index(max(hashes))]
        best: tuple[float, int] | None = None
        chosen: Backend | None = None
        for group in groups:
            hashes = list(map(xxh3_64_intdigest, repeat(data), group.seeds))
            h = max(hashes)
            candidate = group.backends[hashes.index(h)]
            value = (-group.weight / math.log(((h >> 12) + 0.5) * _U_SCALE), h)
            if (
                best is None
                or value > best
                or (value == best and chosen is not None and candidate.name < chosen.name)
            ):
                best, chosen = value, candidate
        return chosen

    def _rank(self, key: str, size: int) -> tuple[Backend, ...]:
        # Candidates are in name order and both sorts below are stable, so equal (score, h)
        # keep the lowest name first. With one weight the order by h is the order by score.
        if size == 0:
            return ()
        backends, weights = self._by_name_active, self._weights
        hashes = list(map(xxh3_64_intdigest, repeat(key.encode("utf-8")), self._seeds))
        if len(self._groups) == 1:
            order_key = hashes.__getitem__
        else:
            log = math.log
            scored = [
                (-w / log(((h >> 12) + 0.5) * _U_SCALE), h)
                for w, h in zip(weights, hashes, strict=True)
            ]
            order_key = scored.__getitem__
        if size == len(backends):
            order = sorted(range(size), key=order_key, reverse=True)
        else:
            order = heapq.nlargest(size, range(len(backends)), key=order_key)
        return tuple(backends[i] for i in order)

    # -- JSON (the Redis contract) -------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "algorithm": self.algorithm,
            "backends": [b.to_dict() for b in self.backends],
            "published_at": self.published_at,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, data: str | bytes) -> RouteTable:
        """Parse and validate a table; raises ``InvalidTable`` naming the first problem."""
        if not isinstance(data, str | bytes | bytearray):
            raise InvalidTable(f"route table must be str or bytes, got {type(data).__name__}")
        if len(data) > MAX_JSON_BYTES:
            raise InvalidTable(f"route table is {len(data)} bytes (at most {MAX_JSON_BYTES})")
        try:
            doc = json.loads(
                data, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant
            )
        except (ValueError, RecursionError) as exc:
            # JSONDecodeError and UnicodeDecodeError are ValueErrors; InvalidTable passes through.
            if isinstance(exc, InvalidTable):
                raise
            raise InvalidTable(f"route table is not valid JSON: {exc}") from None
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: object) -> RouteTable:
        if not isinstance(doc, dict):
            raise InvalidTable(f"route table must be a JSON object, got {_json_type(doc)}")
        _check_keys(doc, required=_TOP_KEYS[:3], allowed=_TOP_KEYS, where="route table")
        version, algorithm = doc["version"], doc["algorithm"]
        if not _is_int(version):
            raise InvalidTable(f"version must be an integer, got {_json_type(version)}")
        if not isinstance(algorithm, str):
            raise InvalidTable(f"algorithm must be a string, got {_json_type(algorithm)}")
        published_at = doc.get("published_at")
        if published_at is not None and not isinstance(published_at, str):
            raise InvalidTable(
                f"published_at must be an ISO 8601 string or null, got {_json_type(published_at)}"
            )
        items = doc["backends"]
        if not isinstance(items, list):
            raise InvalidTable(f"backends must be a list, got {_json_type(items)}")
        if len(items) > MAX_BACKENDS:
            raise InvalidTable(f"{len(items)} backends (at most {MAX_BACKENDS})")
        backends = tuple(_backend_from_dict(i, item) for i, item in enumerate(items))
        return cls(version, algorithm, backends, published_at)


def _backend_from_dict(index: int, item: object) -> Backend:
    where = f"backends[{index}]"
    if not isinstance(item, dict):
        raise InvalidTable(f"{where} must be an object, got {_json_type(item)}")
    _check_keys(item, required=_BACKEND_KEYS, allowed=_BACKEND_KEYS, where=where)
    name, address, weight, state = (item[k] for k in _BACKEND_KEYS)
    for label, value, kind in (
        ("name", name, str),
        ("address", address, str),
        ("state", state, str),
    ):
        if not isinstance(value, kind):
            raise InvalidTable(f"{where}.{label} must be a string, got {_json_type(value)}")
    if not _is_int(weight):
        raise InvalidTable(f"{where}.weight must be an integer, got {_json_type(weight)}")
    try:
        return Backend(name, address, weight, state)
    except InvalidTable as exc:
        raise InvalidTable(f"{where}: {exc}") from None


def _check_keys(doc: dict, required: tuple[str, ...], allowed: tuple[str, ...], where: str) -> None:
    if doc.keys() == set(allowed):
        return  # the usual case, checked at C speed
    missing = [k for k in required if k not in doc]
    if missing:
        raise InvalidTable(f"{where} is missing {', '.join(missing)}")
    unknown = sorted(k for k in doc if k not in allowed)
    if unknown:
        raise InvalidTable(f"{where} has unknown field(s) {', '.join(unknown)}")


def _check_timestamp(value: object) -> None:
    if not isinstance(value, str):
        raise InvalidTable(f"published_at must be an ISO 8601 string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidTable(f"published_at {value!r} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise InvalidTable(f"published_at {value!r} has no time zone")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise InvalidTable(f"route table repeats the field {key!r}")
        doc[key] = value
    return doc


def _no_constant(name: str) -> None:
    raise InvalidTable(f"route table contains {name}, which is not JSON")


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return names.get(type(value), type(value).__name__)


def _name_key(backend: Backend) -> str:
    return backend.name
