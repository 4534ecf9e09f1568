"""Helpers for tests of the routing library."""

from __future__ import annotations

from routing.table import ALGORITHM, Backend, RouteTable


def make_table(version: int, *names: str) -> RouteTable:
    """A table with active backends ``names`` (default b1, b2) on made-up loopback ports."""
    names = names or ("b1", "b2")
    backends = tuple(
        Backend(name=name, address=f"127.0.0.1:{9100 + i}", weight=1, state="active")
        for i, name in enumerate(names)
    )
    return RouteTable(version=version, algorithm=ALGORITHM, backends=backends)
