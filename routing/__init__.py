"""Routing: the pure core (canonical keys, route table) and the Django app for the pool.

Importing this package, ``routing.hosts`` or ``routing.table`` must not import Django or
Redis (a test asserts it): the proxy and the nodes use the core without either. The Django
app's modules (``routing.apps`` and its neighbours) are imported only by Django itself.
"""

from routing.hosts import InvalidHost, canonical_host, reload_path, route_key
from routing.table import ALGORITHM, Backend, InvalidTable, RouteTable

__all__ = [
    "ALGORITHM",
    "Backend",
    "InvalidHost",
    "InvalidTable",
    "RouteTable",
    "canonical_host",
    "reload_path",
    "route_key",
]
