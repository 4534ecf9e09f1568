"""Routing: the Django-free library (canonical keys, route table, moves, addresses; the Redis
contract in ``routing.publish`` and ``routing.subscriber``).

Importing this package, ``routing.hosts`` or ``routing.table`` must not import Django or
Redis (a test asserts it): the proxy and the nodes use the core without either. The backend
pool's Django app lives in the subpackage ``routing.pool``, imported only by Django itself.
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
