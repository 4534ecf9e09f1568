"""A Redis master, its replicas and three sentinels: the layout `make demo` runs with
``DEMO_REDIS=sentinel`` and the test suite's Sentinel groups and several-host bed start.

Pure: addresses in, configuration files and command lines out; starting them is the caller's.

- Every Redis instance is started alike (the same ACL file, the same ``masteruser`` and
  ``masterauth``), because any of them may be promoted, and a demoted master must be able to
  replicate from the new one.
- With access control two more users exist beside the platform's (scripts/redis_users.py):
  ``replica`` (what a replica sends its master) and ``sentinel`` (what a sentinel needs to watch
  and reconfigure an instance, as the Redis documentation lists it). ``Access.write`` writes
  the one ACL file of the group and draws those two passwords; ``redis_argv`` and
  ``sentinel_conf`` given it start every instance with that file and the ``replica`` user, and
  every sentinel with the ``sentinel`` user. Sentinels themselves take no password here (they
  answer only where the master is); a managed Sentinel that requires one gets it from the
  ``sentinel_username``/``sentinel_password`` options of the URL (routing/connect.py).
- A sentinel rewrites its own configuration file as it learns the group, so the file must be
  its own and writable; ``sentinel_conf`` writes a fresh one each start.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from routing.connect import with_credentials
from routing.publish import DEFAULT_PREFIX
from scripts import redis_users
from scripts.services import redis_server_binary

MASTER_NAME = "hosting"
# Sentinel's own timings, short enough that a fail-over completes in a few seconds:
# a master silent for DOWN_AFTER_MS is subjectively down; a quorum of 2 of 3 makes it
# objectively down and one sentinel, elected, promotes the replica.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
QUORUM = 2

REPLICA_RULES = ["on", "resetkeys", "resetchannels", "-@all", "+psync", "+replconf", "+ping"]
SENTINEL_RULES = [
    "on", "resetkeys", "resetchannels", "allchannels", "-@all", "+multi", "+slaveof", "+ping",
    "+exec", "+subscribe", "+config|rewrite", "+role", "+publish", "+info", "+client|setname",
    "+client|kill", "+script|kill",
]  # fmt: skip


@dataclass(frozen=True)
class Instance:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


GROUP_USERS = ("replica", "sentinel")


def acl_lines(passwords: dict[str, str]) -> list[str]:
    """The ``replica`` and ``sentinel`` users, to add to the platform's ACL file."""
    return [
        " ".join(["user", "replica", *REPLICA_RULES, f">{passwords['replica']}"]),
        " ".join(["user", "sentinel", *SENTINEL_RULES, f">{passwords['sentinel']}"]),
    ]


@dataclass(frozen=True)
class Access:
    """A group's access control: the ACL file every instance starts with (the platform's users
    and the group's own), and the passwords of the group's ``replica`` and ``sentinel``."""

    acl_file: Path
    passwords: dict[str, str]

    @classmethod
    def write(cls, var_dir: Path, members=(), prefix: str = DEFAULT_PREFIX) -> Access:
        """``VAR_DIR/redis/users.acl`` with the platform's users (their passwords kept in
        ``VAR_DIR/redis/users.json``, ``redis_users.write_acl_file``) and the group's, whose
        passwords are drawn afresh: only this start's instances and sentinels use them, and
        each start writes the file and the sentinels' configurations anew."""
        passwords = {user: secrets.token_urlsafe(24) for user in GROUP_USERS}
        acl = redis_users.write_acl_file(var_dir, prefix, members, extra=acl_lines(passwords))
        return cls(acl, passwords)


def redis_argv(
    instance: Instance,
    data_dir: Path,
    *,
    replica_of: Instance | None = None,
    access: Access | None = None,
    save: str = "",
    protected_mode: bool = True,
) -> list[str]:
    """One Redis instance of the group: a master, or a replica of ``replica_of``; with
    ``access``, its users and the ``replica`` user's password for its master (any instance may
    be a replica some day, so every one gets them).

    ``protected_mode=False`` lets clients on other hosts in without a password; only for a
    network nobody else reaches (the test bed's namespaces) or with access control."""
    argv = [
        redis_server_binary(),
        "--bind", instance.host,
        "--port", str(instance.port),
        "--dir", str(data_dir),
        "--save", save,
        "--appendonly", "no",
        "--logfile", "redis.log",
        # A replica that lost its master keeps answering reads of the table it holds.
        "--replica-serve-stale-data", "yes",
        "--protected-mode", "yes" if protected_mode else "no",
    ]  # fmt: skip
    if access is not None:
        argv += ["--aclfile", str(access.acl_file)]
        argv += ["--masteruser", "replica", "--masterauth", access.passwords["replica"]]
    if replica_of is not None:
        argv += ["--replicaof", replica_of.host, str(replica_of.port)]
    return argv


def sentinel_conf(
    path: Path,
    sentinel: Instance,
    master: Instance,
    *,
    master_name: str = MASTER_NAME,
    access: Access | None = None,
    protected_mode: bool = True,
    down_after_ms: int = DOWN_AFTER_MS,
) -> Path:
    """Write a fresh configuration for one sentinel watching ``master``; with ``access``, it
    authenticates to the instances as the ``sentinel`` user."""
    lines = [
        f"bind {sentinel.host}",
        f"protected-mode {'yes' if protected_mode else 'no'}",
        f"port {sentinel.port}",
        f"dir {path.parent}",
        f"logfile {path.stem}.log",
        f"sentinel monitor {master_name} {master.host} {master.port} {QUORUM}",
        f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
        f"sentinel failover-timeout {master_name} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {master_name} 1",
    ]
    if access is not None:
        lines += [
            f"sentinel auth-user {master_name} sentinel",
            f"sentinel auth-pass {master_name} {access.passwords['sentinel']}",
        ]
    # The sentinel rewrites the file under its umask (0644): the directory keeps it private.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def sentinel_argv(conf: Path) -> list[str]:
    """Debian's ``redis-sentinel`` when installed, else ``redis-server --sentinel`` (the same
    program: Sentinel is a mode of redis-server)."""
    binary = shutil.which("redis-sentinel")
    if binary:
        return [binary, str(conf)]
    return [redis_server_binary(), str(conf), "--sentinel"]


def sentinel_url(
    sentinels: list[Instance],
    *,
    master_name: str = MASTER_NAME,
    db: int = 0,
    username: str | None = None,
    password: str | None = None,
) -> str:
    """The ``sentinel://`` URL of the group, with a master user when given."""
    url = f"sentinel://{','.join(str(s) for s in sentinels)}/{master_name}/{db}"
    if username is not None and password is not None:
        url = with_credentials(url, username, password)
    return url
