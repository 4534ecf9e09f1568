"""The client's address behind our own proxies (for the audit trail and sign-in lockouts).

Requests reach the panel through the front proxy and a node, each appending the address it saw
to X-Forwarded-For. Walking the chain from the right and skipping our own proxies
(``TRUSTED_PROXIES``) gives the first address that no proxy of ours vouches for: the client.
Entries left of it were written by the client and are ignored, so rotating them changes nothing.

The panel's gunicorn listens on a unix socket that only its node can reach, so an empty
``REMOTE_ADDR`` (a unix-socket peer) is the local node: one of our own hops, whose
X-Forwarded-For (its own trusted view, see ``proxy.core.request_head_for_upstream``) is read
like any trusted proxy's. Without that, every visitor behind a node would have no address, and
sign-in lockouts would act per username alone (decision 0100).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def client_address(
    forwarded_for: str, remote_addr: str, trusted: tuple[Network, ...]
) -> str | None:
    chain = [part.strip() for part in forwarded_for.split(",") if part.strip()]
    if remote_addr:
        chain.append(remote_addr)
    # else: a unix-socket peer, the local node, trusted as our own hop
    leftmost: str | None = None
    for raw in reversed(chain):
        try:
            address = ipaddress.ip_address(raw)
        except ValueError:
            # Garbage where an address should be: stop at the last one we could trust.
            return leftmost
        if not any(address in network for network in trusted):
            return str(address)
        leftmost = str(address)
    return leftmost


def client_ip(request) -> str | None:
    """``AXES_CLIENT_IP_CALLABLE`` and the audit trail's client address."""
    return client_address(
        request.META.get("HTTP_X_FORWARDED_FOR", ""),
        request.META.get("REMOTE_ADDR", ""),
        parse_networks(settings.TRUSTED_PROXIES),
    )
