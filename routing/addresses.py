"""Addresses and backend names: the one parser of ``host:port`` and the one backend-name rule.

Invariants (tests/routing/test_addresses.py):

1. ``parse_address`` is the only code that splits ``host:port``. It accepts ``host:port`` and
   ``[v6]:port``; the port is ASCII digits from 1 to 65535; the host is returned in canonical
   form (``routing.canonical_host``), so ``Node1.Example:80`` and ``node1.example:80`` are one
   address. Anything else raises ``InvalidAddress`` naming the problem.
2. ``Address.host`` is the canonical host as written in a URL (IPv6 bracketed);
   ``Address.bind_host`` is what ``socket.bind``/``connect`` take (IPv6 unbracketed).
3. ``is_backend_name`` is the pool's naming rule (a DNS label: lower-case letters, digits and
   inner hyphens, 1 to 63 characters). The route table's wire format accepts any name without
   whitespace (``routing.table``), so that another implementation's vectors with Unicode names
   stay valid; every name the panel creates satisfies this stricter rule.

Pure: no I/O, no settings, no Django, no Redis.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from routing.hosts import InvalidHost, canonical_host

__all__ = [
    "BACKEND_NAME_HELP",
    "BACKEND_NAME_PATTERN",
    "DEFAULT_TRUSTED_PROXIES",
    "Address",
    "InvalidAddress",
    "is_backend_name",
    "parse_address",
]

BACKEND_NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
BACKEND_NAME_HELP = "lower-case letters, digits and inner hyphens, at most 63 characters (e.g. b3)"
# Peers whose X-Forwarded-* headers are believed unless told otherwise: our own hops on this
# machine (the proxy in front of a node, the node in front of the panel).
DEFAULT_TRUSTED_PROXIES = ("127.0.0.1/32", "::1/128")
_BACKEND_NAME = re.compile(BACKEND_NAME_PATTERN)
_PORT = re.compile(r"[0-9]{1,5}")
# Bounds the work done on hostile input (a host is at most 253 octets, a port 5 digits).
MAX_ADDRESS_LENGTH = 300


class InvalidAddress(ValueError):
    """Text that is not ``host:port``; the message names the problem."""


class Address(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def bind_host(self) -> str:
        return self.host[1:-1] if self.host.startswith("[") else self.host


def parse_address(raw: object) -> Address:
    """``host:port`` or ``[v6]:port`` -> ``Address(canonical host, port)``; ``InvalidAddress``."""
    if not isinstance(raw, str):
        raise InvalidAddress(f"address {raw!r} must be a 'host:port' string")
    if len(raw) > MAX_ADDRESS_LENGTH:
        raise InvalidAddress(f"address {raw[:40]!r}... is longer than {MAX_ADDRESS_LENGTH}")
    host, sep, port = raw.rpartition(":")
    if not sep or not host:
        raise InvalidAddress(f"address {raw!r} is not 'host:port'")
    if host.count(":") and not host.startswith("["):
        raise InvalidAddress(f"address {raw!r} has an IPv6 host without brackets (write [::1]:80)")
    if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise InvalidAddress(f"address {raw!r} has no port from 1 to 65535")
    try:
        return Address(canonical_host(host), int(port))
    except InvalidHost as exc:
        raise InvalidAddress(f"address {raw!r} has an invalid host: {exc}") from None


def is_backend_name(name: object) -> bool:
    """True for a name the pool may give a backend (invariant 3)."""
    return isinstance(name, str) and _BACKEND_NAME.fullmatch(name) is not None
