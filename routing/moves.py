"""Which apps a pool change moves: the routing core applied to two tables and a list of keys.

Pure: plain data in, a plan out (no Django, no Redis). The admin's preview, the CLI, the API and
the revision history all use this, so the number an operator is shown before a change is the
number recorded after it and the one the proxies then act on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from routing.table import RouteTable


@dataclass(frozen=True)
class Move:
    key: str
    source: str | None  # None: no active backend served it before
    target: str | None  # None: no active backend serves it after


@dataclass(frozen=True)
class MovePlan:
    total: int
    moves: tuple[Move, ...]

    @property
    def moved(self) -> int:
        return len(self.moves)

    def counts(self) -> list[dict[str, object]]:
        """[{"from", "to", "count"}], largest first, then by names: for history and display."""
        pairs = Counter((m.source, m.target) for m in self.moves)
        ordered = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0][0] or "", kv[0][1] or ""))
        return [{"from": s, "to": t, "count": n} for (s, t), n in ordered]

    def summary(self) -> str:
        if not self.moves:
            return f"no app moves (of {self.total})"
        parts = [f"{c['count']} {_name(c['from'])} -> {_name(c['to'])}" for c in self.counts()]
        return f"{self.moved} of {self.total} apps move: " + ", ".join(parts)


def _name(backend: object) -> str:
    return str(backend) if backend is not None else "(none)"


def plan_moves(before: RouteTable, after: RouteTable, keys: Iterable[str]) -> MovePlan:
    """Every key whose backend differs between ``before`` and ``after`` (keys are canonical)."""
    moves = []
    total = 0
    for key in keys:
        total += 1
        old = before.backend_for(key)
        new = after.backend_for(key)
        old_name = old.name if old is not None else None
        new_name = new.name if new is not None else None
        if old_name != new_name:
            moves.append(Move(key, old_name, new_name))
    return MovePlan(total=total, moves=tuple(moves))


def app_counts(table: RouteTable, keys: Iterable[str]) -> Counter[str | None]:
    """How many keys each backend serves in ``table`` (None: keys no backend serves)."""
    counts: Counter[str | None] = Counter()
    for key in keys:
        backend = table.backend_for(key)
        counts[backend.name if backend is not None else None] += 1
    return counts
