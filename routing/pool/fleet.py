"""The fleet as the panel shows it: who holds which table version, the pool's apps per backend,
and what a change not yet everywhere moves. One status for the admin's fleet page,
``manage.py routing status`` and ``GET /api/v0/fleet/``.

The members report themselves (``routing.fleet`` heartbeats in Redis); the current version is
the database's (the committed pool). A member holding a later version (a newer table in Redis
than the database, say after a restore) counts as holding it: versions only go up.

Besides the table: whether each node sandboxes its apps ("isolation: off" when it runs them as
its own user), and for each proxy with a TLS listener how many certificates it holds and the
nearest expiry, flagged when that falls within the renewal window (``ACME_RENEW_DAYS_BEFORE``):
a certificate that renews on time is replaced before it gets there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from django.conf import settings

from routing.fleet import Convergence, Fleet, Member, convergence, holds, read_fleet
from routing.pool import tables, tasks
from routing.pool.models import RouteVersion
from routing.table import RouteTable
from webapps.routes import published_table

# The fleet page lists at most this many pending moves by name; the counts cover all of them.
MAX_LISTED_MOVES = 200
DAY = 86_400.0


def isolation_word(member: Member) -> str | None:
    """``on`` or ``off`` for a node that reports it; None for a proxy or an older node."""
    return None if member.isolation is None else ("on" if member.isolation else "off")


def expiry_days(member: Member, now: float) -> float | None:
    """Days from ``now`` to the member's nearest certificate expiry (negative: expired)."""
    if member.certs_not_after is None:
        return None
    return round((member.certs_not_after - now) / DAY, 1)


@dataclass(frozen=True)
class Bar:
    """One backend on the pool's bar chart."""

    name: str
    state: str
    weight: int
    apps: int
    percent: int  # of the largest bar, for drawing


@dataclass(frozen=True)
class FleetStatus:
    current: int  # the committed version
    changed_at: float  # its commit time (wall clock)
    published: int | None  # what Redis holds (None: nothing, or unreachable)
    fleet: Fleet
    convergence: Convergence
    bars: tuple[Bar, ...]
    unrouted: int  # apps with no active backend
    pending: tuple[dict[str, Any], ...]  # {"from", "to", "count"} from published to committed
    pending_moved: int
    pending_moves: tuple[Any, ...]
    error: str = ""  # Redis unreachable: the members cannot be read
    now: float = 0.0
    renew_days: int = 30  # the renewal window: a nearer expiry is flagged

    def expiring(self, member: Member) -> bool:
        days = expiry_days(member, self.now)
        return days is not None and days <= self.renew_days

    @property
    def isolation_off(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members if m.isolation is False)

    @property
    def certificates_expiring(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members if self.expiring(m))

    @property
    def members(self) -> tuple[Member, ...]:
        return self.fleet.members

    def member_rows(self) -> list[dict[str, Any]]:
        return [self._row(m) for m in self.members]

    def _row(self, m: Member) -> dict[str, Any]:
        return {
            "name": m.name,
            "role": m.role,
            "address": m.address,
            "version": m.version,
            "converged": holds(m, self.current),
            "table_age": m.table_age,
            "redis_connected": m.redis_connected,
            "down": list(m.down),
            "rps": m.rps,
            "last_seen": round(m.seen_ago(self.now), 1),
            "misrouted_reloads": m.misrouted_reloads,
            "isolation": isolation_word(m),
            "in_force": list(m.in_force),
            "certificates": m.certificates,
            "nearest_expiry": None
            if m.certs_not_after is None
            else datetime.fromtimestamp(m.certs_not_after, UTC).isoformat(timespec="seconds"),
            "expires_in_days": expiry_days(m, self.now),
            "expiring": self.expiring(m),
        }

    def to_dict(self) -> dict[str, Any]:
        c = self.convergence
        return {
            "version": self.current,
            "published": self.published,
            "converged": c.converged,
            "summary": c.line(),
            "elapsed_ms": c.elapsed_ms,
            "counts": {x.role: {"holding": x.holding, "total": x.total} for x in c.counts},
            "members": self.member_rows(),
            "backends": [
                {"name": b.name, "state": b.state, "weight": b.weight, "apps": b.apps}
                for b in self.bars
            ],
            "unrouted_apps": self.unrouted,
            "pending_moves": list(self.pending),
            "isolation_off": list(self.isolation_off),
            "certificates_expiring": list(self.certificates_expiring),
            "renew_days_before": self.renew_days,
            "error": self.error or None,
        }

    def lines(self) -> list[str]:
        """The text of ``manage.py routing status``."""
        out = [self.convergence.line()]
        published = "nothing" if self.published is None else f"version {self.published}"
        out.append(f"database: version {self.current}; redis: {published}")
        if self.error:
            out.append(f"fleet unknown: {self.error}")
        for r in self.member_rows():
            mark = "ok" if r["converged"] else "BEHIND"
            age = "-" if r["table_age"] is None else f"{r['table_age']:.1f}s"
            line = (
                f"  {r['role']:<5} {r['name']:<24} {r['address'] or '-':<21} "
                f"v{r['version'] if r['version'] is not None else '-'} {mark:<6} "
                f"age {age}  redis {'up' if r['redis_connected'] else 'DOWN'}  "
                f"{r['rps']:g} req/s  seen {r['last_seen']:g}s ago"
            )
            if r["down"]:
                line += f"  down: {', '.join(r['down'])}"
            if r["misrouted_reloads"] is not None:
                line += f"  misrouted reloads {r['misrouted_reloads']}"
            if r["isolation"] is not None:
                line += f"  isolation: {r['isolation']}"
            if r["certificates"] is not None:
                line += f"  certificates {r['certificates']}"
            if r["nearest_expiry"] is not None:
                line += f", nearest expiry {r['nearest_expiry'][:10]} ({r['expires_in_days']:g} d)"
                line += "  EXPIRING" if r["expiring"] else ""
            out.append(line)
        if not self.members and not self.error:
            out.append("  (no member has reported: no proxy or node runs against this Redis)")
        if self.isolation_off:
            names = ", ".join(self.isolation_off)
            out.append(f"isolation: off (apps share the node's user) on {names}")
        if self.certificates_expiring:
            out.append(
                f"certificates expiring within the renewal window ({self.renew_days} days) on "
                f"{', '.join(self.certificates_expiring)}"
            )
        out.append("apps per backend:")
        for b in self.bars:
            out.append(f"  {b.name:<12} {b.state:<9} {'#' * (b.percent // 5):<20} {b.apps}")
        if self.unrouted:
            out.append(f"  (no backend) {self.unrouted}")
        for p in self.pending:
            out.append(
                f"pending: {p['count']} apps {p['from'] or '(none)'} -> {p['to'] or '(none)'}"
            )
        return out


def fleet_status(version: int | None = None) -> FleetStatus:
    """The fleet against ``version`` (default: the committed one)."""
    committed = tables.committed_table()
    row = RouteVersion.current()
    current = committed.version if version is None else version
    error = ""
    try:
        fleet = read_fleet(tasks.redis_client(), settings.REDIS_PREFIX)
    except redis.RedisError as exc:
        fleet, error = Fleet(()), f"Redis unreachable ({exc})"
    since = row.changed_at.timestamp() if current == committed.version else None
    published = published_table()
    bars, unrouted = _bars(committed)
    pending, moved, moves = (), 0, ()
    if published is not None and published.version < committed.version:
        plan = tables.plan(published, committed)
        pending, moved = tuple(plan.counts()), plan.moved
        moves = plan.moves[:MAX_LISTED_MOVES]
    return FleetStatus(
        current=current,
        changed_at=row.changed_at.timestamp(),
        published=published.version if published is not None else None,
        fleet=fleet,
        convergence=convergence(fleet.members, current, since),
        bars=bars,
        unrouted=unrouted,
        pending=pending,
        pending_moved=moved,
        pending_moves=moves,
        error=error,
        now=time.time(),
        renew_days=settings.ACME_RENEW_DAYS_BEFORE,
    )


def _bars(table: RouteTable) -> tuple[tuple[Bar, ...], int]:
    counts = tables.apps_per_backend(table)
    top = max([counts.get(b.name, 0) for b in table.backends] + [1])
    bars = tuple(
        Bar(
            b.name,
            b.state,
            b.weight,
            counts.get(b.name, 0),
            round(100 * counts.get(b.name, 0) / top),
        )
        for b in table.backends
    )
    return bars, counts.get(None, 0)
