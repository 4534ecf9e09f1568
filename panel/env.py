"""Typed readers for settings that come from the environment.

Each helper fails loudly with ``ImproperlyConfigured`` naming the variable, so a typo in a
deployment stops the process at start-up instead of surfacing as odd behaviour later.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from routing.connect import check_redis_url

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum of {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_redis_url(name: str, default: str) -> str:
    raw = os.environ.get(name, default)
    try:
        return check_redis_url(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={exc}") from None


def env_file(name: str) -> str:
    """A path to an existing file, or "" when the variable is unset or empty."""
    raw = os.environ.get(name, "").strip()
    if raw and not Path(raw).is_file():
        raise ImproperlyConfigured(f"{name}={raw!r} is not a file")
    return raw


def env_trusted_keys(name: str) -> str:
    """One or two route-table public keys (``ed25519:...`` or files holding them, separated by
    commas or spaces), checked now; "" when unset: the machine's key under ``VAR_DIR/keys/``."""
    from routing.keys import parse_trusted_keys

    raw = os.environ.get(name, "").strip()
    if raw:
        try:
            parse_trusted_keys(raw)
        except (ValueError, OSError) as exc:
            raise ImproperlyConfigured(f"{name}: {exc}") from None
    return raw


def env_pythons(name: str) -> str:
    """Versions and interpreters, ``3.11=/usr/bin/python3.11,...``, checked for form now (a
    node checks that each one runs); "" when unset."""
    from webapps.node.pythons import parse_pythons

    raw = os.environ.get(name, "").strip()
    try:
        parse_pythons(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None
    return raw
