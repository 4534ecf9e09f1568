"""Rules for the domain a web app may claim (pure: settings values come in as arguments).

Invariants:
- a stored domain is ``routing.canonical_host(typed)``: ASCII, lower-case, no trailing dot, no port;
- it is shown to people in Unicode (``display_domain``), never stored that way;
- ``<username lower>.<APPS_DOMAIN>`` and anything under it belong to that user only;
- the panel's own host, any name under it or above it, the apps domain itself and the reserved
  names are never an app's.
Collisions with an existing app are the caller's check (it needs the database).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

import idna

from routing import InvalidHost, canonical_host


class DomainError(ValueError):
    """A domain that may not be used for this user's app; the message says why."""


@dataclass(frozen=True)
class DomainPolicy:
    panel_host: str
    apps_domain: str
    reserved: frozenset[str]

    @classmethod
    def build(cls, panel_host: str, apps_domain: str, reserved: Iterable[str]) -> DomainPolicy:
        return cls(
            panel_host=canonical_host(panel_host),
            apps_domain=canonical_host(apps_domain),
            reserved=frozenset(canonical_host(name) for name in reserved),
        )


def display_domain(canonical: str) -> str:
    """The Unicode spelling of a canonical domain, for people (falls back to the ASCII form)."""
    try:
        return idna.decode(canonical)
    except idna.IDNAError:
        return canonical


def clean_domain(raw: object, username: str, policy: DomainPolicy) -> str:
    """The canonical form of ``raw`` if ``username`` may claim it, else ``DomainError``."""
    if not isinstance(raw, str):
        raise DomainError("the domain name must be a string")
    typed = raw.strip()
    if not typed:
        raise DomainError("the domain name is empty")
    if ":" in typed or typed.startswith("["):
        raise DomainError(f"{typed!r} has a port or is an IPv6 address; give a bare domain name")
    try:
        domain = canonical_host(typed)
    except InvalidHost as exc:
        raise DomainError(f"{typed!r} is not a valid domain name: {exc}") from None
    if _is_ip_address(domain):
        raise DomainError(f"{typed!r} is an IP address; give a domain name")
    if domain == policy.panel_host:
        raise DomainError(f"{typed!r} is the control panel's own address")
    if domain in policy.reserved:
        raise DomainError(f"{typed!r} is a reserved name")
    if "." not in domain:
        raise DomainError(f"{typed!r} needs at least two labels, like example.com")
    # An app under the panel's host, or at a domain above it, could set cookies the panel's
    # pages receive (or read ones scoped to that domain).
    if domain.endswith("." + policy.panel_host):
        raise DomainError(f"{typed!r} is under the control panel's address {policy.panel_host}")
    if policy.panel_host.endswith("." + domain):
        raise DomainError(f"{typed!r} is above the control panel's address {policy.panel_host}")
    if domain == policy.apps_domain:
        raise DomainError(f"{typed!r} is the platform's apps domain itself")
    suffix = "." + policy.apps_domain
    if domain.endswith(suffix):
        label = domain[: -len(suffix)].rsplit(".", 1)[-1]
        own = username_label(username)
        if label != own:
            yours = f"yours is {display_domain(own + suffix)}" if own else "your name has none"
            raise DomainError(
                f"{typed!r} is under {policy.apps_domain}, where each user may only use "
                f"<username>.{policy.apps_domain} ({yours})"
            )
    return domain


def username_label(username: str) -> str:
    """The user's own label under APPS_DOMAIN, in canonical (IDNA) form; "" if it has none."""
    try:
        label = canonical_host(username)
    except InvalidHost:
        return ""
    return label if "." not in label else ""


def _is_ip_address(domain: str) -> bool:
    try:
        ipaddress.ip_address(domain)
    except ValueError:
        return False
    return True
