"""The pool as route tables: built from the database, and the apps a change would move.

``committed_table()`` reads the version row and the backends in one transaction with the version
row locked, so the table it returns is exactly the one committed under that version (a pool
change in flight either finished before or waits).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from routing.moves import MovePlan, app_counts, plan_moves
from routing.pool.models import Backend, RouteVersion
from routing.table import ALGORITHM, RouteTable
from webapps.models import WebApp


def table_of(version: int, backends: Iterable[Backend], published_at: str | None) -> RouteTable:
    """The core's table for these backend rows (sorted by name: one table per pool state)."""
    entries = tuple(b.table_entry() for b in sorted(backends, key=lambda b: b.name))
    return RouteTable(
        version=version, algorithm=ALGORITHM, backends=entries, published_at=published_at
    )


def version_table(row: RouteVersion, backends: Iterable[Backend]) -> RouteTable:
    # published_at is the commit time of the version, not the moment of a (re)publish, so every
    # publish of one version writes the same bytes: a repeated task changes nothing.
    return table_of(row.version, backends, row.changed_at.isoformat())


def committed_table() -> RouteTable:
    """The table of the committed pool, under its version (0 before any change); what Redis
    holds is ``webapps.routes.published_table()``."""
    with transaction.atomic():
        row = RouteVersion.locked()
        return version_table(row, Backend.objects.all())


def app_keys() -> list[str]:
    """The routing key of every web app (domains are stored canonical)."""
    return list(WebApp.objects.order_by("domain").values_list("domain", flat=True))


def plan(before: RouteTable, after: RouteTable) -> MovePlan:
    return plan_moves(before, after, app_keys())


def apps_per_backend(table: RouteTable | None = None) -> dict[str | None, int]:
    table = table if table is not None else committed_table()
    return dict(app_counts(table, app_keys()))
