"""Redis users of the platform: who may read, write and announce what (docs/operations.md,
"Redis access control").

- ``reader``: read the table and its signature (one ``MGET``), the certificate and challenge
  documents, and subscribe to their change channels; write nothing.
- one user per fleet member, ``node-<name>`` and ``proxy-<name>`` (``member_user``): what the
  reader may, and ``SET`` on its own heartbeat key (a proxy: its workers' keys), nothing else
  under ``<prefix>fleet:`` (``routing.fleet.member_pattern``). A member given the plain
  ``reader`` user routes as well but cannot report itself (it is missing from the fleet page).
- ``publisher`` (the publish task, ``routing publish``): read and write the table and its
  signature through the compare-and-set script, announce on the change channel.
- ``panel`` (the panel's web processes): its cache and throttle keys, Celery's keys (to queue
  tasks), the certificate and challenge documents (it publishes them), read the table and the
  fleet's heartbeats; pub/sub only on the documents' channels and Celery's (``celery_channels``),
  never on the route table's.
- ``celery`` (Celery worker and beat): the same as the panel, under a password of its own.
- ``admin`` (the operator): everything; kept in VAR_DIR, no process of the platform uses it.

The default user is switched off: a connection without a password can do nothing. Celery's keys
live under ``<prefix>celery:`` (``CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]``), so the
panel and Celery users are limited to their own keys and neither can write the table.

On one machine ``ensure_passwords`` draws each user's password once into
``VAR_DIR/redis/users.json`` (mode 0600) and ``write_acl_file`` writes the ACL file that the
demo's private Redis is started with (``--aclfile``, mode 0600); both take the fleet's
members, ``(role, name)`` pairs. For a managed Redis, ``python -m scripts.redis_users acl
[--prefix P] [--node NAME ...] [--proxy NAME ...]`` prints the ``ACL SETUSER`` commands
(passwords as placeholders).
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
from routing.fleet import fleet_pattern, member_key, member_pattern
from routing.publish import DEFAULT_PREFIX, channel, signature_key, table_key

ROLES = ("reader", "publisher", "panel", "celery", "admin")
# Celery's PSUBSCRIBE patterns (kombu's fanout: remote control and worker events), one pair per
# database. Redis allows a PSUBSCRIBE only to a pattern listed literally in the user's channel
# rules, so they are listed for every database a URL may select (Redis' default 16).
_CELERY_PATTERNS = ("/{db}.celery.pidbox", "/{db}.celeryev/worker.*")
_DATABASES = range(16)
# Commands client libraries send on connecting (SELECT for a database other than 0, HELLO),
# and liveness checks. (redis-py also sends CLIENT SETINFO, and ignores its refusal.)
_CONNECT = ("+ping", "+hello", "+client|setname", "+select", "+quit", "+reset")


def celery_prefix(prefix: str = DEFAULT_PREFIX) -> str:
    """Where Celery's broker keys live (kombu's ``global_keyprefix``)."""
    return f"{prefix}celery:"


def celery_channels(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """The channel rules Celery needs: everything under its prefix (PUBLISH, SUBSCRIBE), and
    its PSUBSCRIBE patterns literally."""
    base = celery_prefix(prefix)
    literal = [f"{base}{p.format(db=db)}" for db in _DATABASES for p in _CELERY_PATTERNS]
    return [f"{base}*", *literal]


def member_user(role: str, name: str) -> str:
    """The Redis user of fleet member ``name`` (``routing.fleet`` roles: node, proxy)."""
    member_key(role, name)  # ValueError names a bad role or name
    return f"{role}-{name}"


def member_rules(role: str, name: str, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """A fleet member's rules: the reader's, and SET on its own heartbeat key(s) only."""
    return [*rules("reader", prefix), f"%W~{member_pattern(role, name, prefix)}", "+set"]


def users(members=()) -> list[str]:
    """Every user: the roles, then one per member (``(role, name)`` pairs), in order."""
    return [*ROLES, *dict.fromkeys(member_user(role, name) for role, name in members)]


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
            # The documents' change channels (the panel publishes them) and Celery's; not the
            # route table's, which only the publisher announces on.
            *(f"&{kind.channel(prefix)}" for kind in (CERTS, CHALLENGES)),
            *(f"&{name}" for name in celery_channels(prefix)),
            "+@all",
            "-@admin",
            "-@dangerous",
        ]
    if role == "admin":
        return ["on", "~*", "&*", "+@all"]
    raise ValueError(f"unknown Redis role {role!r}; one of {', '.join(ROLES)}")


def ensure_passwords(var_dir: Path, members=()) -> dict[str, str]:
    """Each user's password (``users(members)``), drawn once into ``VAR_DIR/redis/users.json``
    (0600, dir 0700)."""
    directory = Path(var_dir) / "redis"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / "users.json"
    passwords: dict[str, str] = {}
    if path.exists():
        passwords = json.loads(path.read_text())
    missing = [user for user in users(members) if user not in passwords]
    if missing:
        passwords.update({role: secrets.token_urlsafe(32) for role in missing})
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(passwords, handle)
        os.replace(path.with_suffix(".tmp"), path)
    path.chmod(0o600)
    return passwords


def user_rules(prefix: str = DEFAULT_PREFIX, members=()) -> dict[str, list[str]]:
    """Each user's rules: the roles', then each member's."""
    out = {role: rules(role, prefix) for role in ROLES}
    for role, name in members:
        out[member_user(role, name)] = member_rules(role, name, prefix)
    return out


def acl_lines(passwords: dict[str, str], prefix: str = DEFAULT_PREFIX, members=()) -> list[str]:
    """An ACL file: the default user off, then one line per role and per member."""
    lines = ["user default off resetkeys resetchannels -@all"]
    for user, user_rules_ in user_rules(prefix, members).items():
        lines.append(" ".join(["user", user, *user_rules_, f">{passwords[user]}"]))
    return lines


def write_acl_file(
    var_dir: Path,
    prefix: str = DEFAULT_PREFIX,
    members=(),
    extra: list[str] | tuple[str, ...] = (),
) -> Path:
    """``VAR_DIR/redis/users.acl`` (0600) for ``redis-server --aclfile``, with a user for each
    of ``members`` (``(role, name)`` pairs) beside the roles; ``extra`` lines after the
    platform's (a replicated group's own users: ``scripts.sentinels.acl_lines``)."""
    passwords = ensure_passwords(var_dir, members)
    path = Path(var_dir) / "redis" / "users.acl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join([*acl_lines(passwords, prefix, members), *extra]) + "\n")
    path.chmod(0o600)
    return path


def url_for(base_url: str, role: str, password: str) -> str:
    """``base_url`` (any Redis URL form, sentinel included) with ``role`` and its password."""
    return with_credentials(base_url, role, password)


def urls(base_url: str, passwords: dict[str, str]) -> dict[str, str]:
    """Each user's URL on the Redis at ``base_url`` (every user ``passwords`` holds)."""
    return {user: url_for(base_url, user, password) for user, password in passwords.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.redis_users",
        description="Print the Redis ACL commands that set up the platform's users.",
    )
    parser.add_argument("verb", choices=["acl"], help="acl: print ACL SETUSER commands")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="REDIS_PREFIX (default hosting:)")
    parser.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="NAME",
        help="a node's --name: a user node-NAME for it (repeatable)",
    )
    parser.add_argument("--proxy", action="append", default=[], metavar="NAME",
                        help="a proxy's --name: a user proxy-NAME for it (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    members = [("node", n) for n in args.node] + [("proxy", n) for n in args.proxy]
    try:
        every = user_rules(args.prefix, members)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("ACL SETUSER default off resetkeys resetchannels -@all")
    for user, user_rules_ in every.items():
        print(" ".join(["ACL SETUSER", user, "reset", *user_rules_, ">PASSWORD"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
