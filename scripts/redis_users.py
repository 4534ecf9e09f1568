"""Redis users of the platform: who may read, write and announce what (docs/operations.md,
"Redis access control").

- ``reader`` (proxies, nodes' route subscribers): read the table and its signature (one
  ``MGET``), the certificate and challenge documents, and subscribe to their change channels;
  write nothing but its own expiring heartbeat under ``<prefix>fleet:``.
- ``publisher`` (the publish task, ``routing publish``): read and write the table and its
  signature through the compare-and-set script, announce on the change channel.
- ``panel`` (the panel's web processes): its cache and throttle keys, Celery's keys (to queue
  tasks), the certificate and challenge documents (it publishes them), read the table and the
  fleet's heartbeats.
- ``celery`` (Celery worker and beat): the same as the panel, under a password of its own.
- ``admin`` (the operator): everything; kept in VAR_DIR, no process of the platform uses it.

The default user is switched off: a connection without a password can do nothing. Celery's keys
live under ``<prefix>celery:`` (``CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]``), so the
panel and Celery users are limited to their own keys and neither can write the table.

On one machine ``ensure_passwords`` draws each user's password once into
``VAR_DIR/redis/users.json`` (mode 0600) and ``write_acl_file`` writes the ACL file that the
demo's private Redis is started with (``--aclfile``, mode 0600). For a managed Redis,
``python -m scripts.redis_users acl [--prefix P]`` prints the ``ACL SETUSER`` commands (passwords
as ``<password>`` placeholders).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

from routing.certs import CERTS, CHALLENGES
from routing.connect import with_credentials
from routing.fleet import fleet_pattern
from routing.publish import DEFAULT_PREFIX, channel, signature_key, table_key

ROLES = ("reader", "publisher", "panel", "celery", "admin")
# Commands client libraries send on connecting (SELECT for a database other than 0, HELLO),
# and liveness checks. (redis-py also sends CLIENT SETINFO, and ignores its refusal.)
_CONNECT = ("+ping", "+hello", "+client|setname", "+select", "+quit", "+reset")


def celery_prefix(prefix: str = DEFAULT_PREFIX) -> str:
    """Where Celery's broker keys live (kombu's ``global_keyprefix``)."""
    return f"{prefix}celery:"


def rules(role: str, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """The ACL rules of ``role`` (without its password), as ``ACL SETUSER`` takes them."""
    routes = [table_key(prefix), signature_key(prefix)]
    documents = [
        key
        for kind in (CERTS, CHALLENGES)
        for key in (kind.key(prefix), kind.signature_key(prefix))
    ]
    channels = [channel(prefix), *(kind.channel(prefix) for kind in (CERTS, CHALLENGES))]
    base = ["on", "resetkeys", "resetchannels", "-@all", *_CONNECT]
    if role == "reader":
        return [
            *base,
            *(f"%R~{key}" for key in [*routes, *documents]),
            *(f"&{name}" for name in channels),
            "+mget",
            "+subscribe",
            "+unsubscribe",
            # Its own heartbeat (routing.fleet): a key that expires, under <prefix>fleet:.
            f"~{fleet_pattern(prefix)}",
            "+set",
            "+del",
        ]
    if role == "publisher":
        return [
            *base,
            *(f"~{key}" for key in routes),
            f"&{channel(prefix)}",
            "+mget",
            "+get",
            "+set",
            "+evalsha",
            "+eval",
            "+script|load",
            "+publish",
        ]
    if role in ("panel", "celery"):
        return [
            *base,
            *(f"%R~{key}" for key in routes),
            # The proxies' certificate and challenge documents, which the panel publishes.
            *(f"~{key}" for key in documents),
            f"%R~{fleet_pattern(prefix)}",
            f"~{celery_prefix(prefix)}*",
            f"~{prefix}cache*",
            f"~{prefix}throttle:*",
            # All channels: Celery's PSUBSCRIBE patterns are checked literally against channel
            # rules. Announcing on the change channel is harmless: readers re-read, verify.
            "allchannels",
            "+@all",
            "-@admin",
            "-@dangerous",
        ]
    if role == "admin":
        return ["on", "~*", "&*", "+@all"]
    raise ValueError(f"unknown Redis role {role!r}; one of {', '.join(ROLES)}")


def ensure_passwords(var_dir: Path) -> dict[str, str]:
    """Each role's password, drawn once into ``VAR_DIR/redis/users.json`` (0600, dir 0700)."""
    directory = Path(var_dir) / "redis"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / "users.json"
    passwords: dict[str, str] = {}
    if path.exists():
        passwords = json.loads(path.read_text())
    missing = [role for role in ROLES if role not in passwords]
    if missing:
        passwords.update({role: secrets.token_urlsafe(32) for role in missing})
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(passwords, handle)
        os.replace(path.with_suffix(".tmp"), path)
    path.chmod(0o600)
    return passwords


def acl_lines(passwords: dict[str, str], prefix: str = DEFAULT_PREFIX) -> list[str]:
    """An ACL file: the default user off, then one line per role."""
    lines = ["user default off resetkeys resetchannels -@all"]
    for role in ROLES:
        lines.append(" ".join(["user", role, *rules(role, prefix), f">{passwords[role]}"]))
    return lines


def write_acl_file(
    var_dir: Path, prefix: str = DEFAULT_PREFIX, extra: list[str] | tuple[str, ...] = ()
) -> Path:
    """``VAR_DIR/redis/users.acl`` (0600) for ``redis-server --aclfile``; ``extra`` lines
    after the platform's (a replicated group's own users: ``scripts.sentinels.acl_lines``)."""
    passwords = ensure_passwords(var_dir)
    path = Path(var_dir) / "redis" / "users.acl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join([*acl_lines(passwords, prefix), *extra]) + "\n")
    path.chmod(0o600)
    return path


def url_for(base_url: str, role: str, password: str) -> str:
    """``base_url`` (any Redis URL form, sentinel included) with ``role`` and its password."""
    return with_credentials(base_url, role, password)


def urls(base_url: str, passwords: dict[str, str]) -> dict[str, str]:
    """Each role's URL on the Redis at ``base_url``."""
    return {role: url_for(base_url, role, passwords[role]) for role in ROLES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.redis_users",
        description="Print the Redis ACL commands that set up the platform's users.",
    )
    parser.add_argument("verb", choices=["acl"], help="acl: print ACL SETUSER commands")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="REDIS_PREFIX (default hosting:)")
    args = parser.parse_args(argv)
    print("ACL SETUSER default off resetkeys resetchannels -@all")
    for role in ROLES:
        print(" ".join(["ACL SETUSER", role, "reset", *rules(role, args.prefix), ">PASSWORD"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
