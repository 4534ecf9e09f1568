"""Helpers for tests of the routing library."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from routing.table import ALGORITHM, Backend, RouteTable


def make_table(version: int, *names: str) -> RouteTable:
    """A table with active backends ``names`` (default b1, b2) on made-up loopback ports."""
    names = names or ("b1", "b2")
    backends = tuple(
        Backend(name=name, address=f"127.0.0.1:{9100 + i}", weight=1, state="active")
        for i, name in enumerate(names)
    )
    return RouteTable(version=version, algorithm=ALGORITHM, backends=backends)


def fixed_key(seed: int) -> Ed25519PrivateKey:
    """A fixed Ed25519 key per ``seed`` (0-255), so failures are reproducible."""
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


# The publisher's key, the next one (a rotation) and a stranger's (a forger's).
PUBLISHER = fixed_key(1)
NEXT = fixed_key(2)
FORGER = fixed_key(66)
