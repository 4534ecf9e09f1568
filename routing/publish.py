"""Writing route tables to Redis: signed, stored only if newer, then announced.

Pure redis-py, no Django: the Celery task, the ``routing publish`` command and the benchmark call
:func:`publish_table` with a client of their own.

Keys (docs/routing.md, "Redis contract"): ``<prefix>routes`` holds the table's JSON bytes,
``<prefix>routes:sig`` the signature line of exactly those bytes (``routing.signing``), and each
newly stored version is announced on ``<prefix>routes:changed``.

Invariants:
- The stored table's version never goes down, and a value that does not count as a table never
  blocks a publish. Which stored value counts is decided here, in Python, because Redis cannot
  verify Ed25519: only a table whose signature verifies with a trusted key (default: the signing
  key's own) and that parses. A value that does not count (junk, a forgery with a huge version,
  a table whose signature line was removed or altered) is replaced by the next publish.
- Every table is signed: there is no unsigned publish and no judging without trusted keys.
- The write is a compare-and-set: a Lua script stores the new table and its signature line
  only if both keys still hold exactly the bytes this publisher read and judged, then announces
  the version. Two publishers racing (an old Celery task delivered late, a duplicate delivery,
  the periodic republish) or a writer slipping a value in between cannot make an older table
  overwrite a newer one: the loser reads again and judges again, at most ``ATTEMPTS`` times.
- A version is announced on the channel only when it was stored, so a subscriber that re-reads
  on every message never sees a message for a table it cannot find.
- The same version signed by another trusted key (a key rotation) is re-signed with the
  signing key, so that readers can later drop the old key; otherwise the same version is left
  alone and a repeated publish changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.exceptions import RedisError

from routing.signing import key_id, sign, trusted_by_id, verified_table

if TYPE_CHECKING:
    import redis
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from routing.table import RouteTable

DEFAULT_PREFIX = "hosting:"
ATTEMPTS = 5

# KEYS[1] the table key, KEYS[2] the signature key.
# ARGV[1] the change channel; ARGV[2], ARGV[3] what the publisher read from KEYS[1], KEYS[2]:
# "" for no value, else "=" followed by the exact bytes; ARGV[4] the new table, ARGV[5] its
# signature line; ARGV[6] the version to announce.
# Returns 1 when stored and announced, 0 when a key no longer holds what was read.
# A key of another type reads as no value (as in MGET), and SET replaces it.
STORE_IF_UNCHANGED_LUA = """
local function read(key)
  local value = redis.pcall('GET', key)
  if type(value) == 'table' and value.err then
    return false
  end
  return value
end
local function same(current, expected)
  if expected == '' then
    return current == false
  end
  return current == string.sub(expected, 2)
end
if not same(read(KEYS[1]), ARGV[2]) or not same(read(KEYS[2]), ARGV[3]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[4])
redis.call('SET', KEYS[2], ARGV[5])
redis.call('PUBLISH', ARGV[1], ARGV[6])
return 1
"""


class PublishContended(RedisError):
    """The stored table kept changing between reading and writing it, ``ATTEMPTS`` times over.

    A ``RedisError``: callers that retry a publish when Redis fails retry this too."""


def table_key(prefix: str = DEFAULT_PREFIX) -> str:
    """The Redis key holding the route table as JSON."""
    return f"{prefix}routes"


def signature_key(prefix: str = DEFAULT_PREFIX) -> str:
    """The Redis key holding the signature line of the bytes in ``table_key``."""
    return f"{prefix}routes:sig"


def channel(prefix: str = DEFAULT_PREFIX) -> str:
    """The pub/sub channel on which each newly stored version number is announced."""
    return f"{prefix}routes:changed"


@dataclass(frozen=True)
class Stored:
    """What Redis holds, as a publisher judges it: ``version`` is None when the value does not
    count as a table (absent, junk, unsigned or badly signed); ``signer`` is the key id."""

    raw: bytes | None
    line: bytes | None
    version: int | None
    signer: str | None = None
    why: str = ""


def judge(
    raw: bytes | None,
    line: bytes | None,
    trusted: dict[str, Ed25519PublicKey],
) -> Stored:
    """Judge the stored bytes: only a table verified with a ``trusted`` key counts."""
    if raw is None:
        return Stored(raw, line, None, why="no table")
    try:
        table, signer = verified_table(raw, line, trusted)
    except ValueError as exc:  # SignatureRefused or InvalidTable
        return Stored(raw, line, None, why=str(exc))
    return Stored(raw, line, table.version, signer)


def read_stored(
    client: redis.Redis,
    prefix: str = DEFAULT_PREFIX,
    *,
    trusted_keys: Sequence[Ed25519PublicKey],
) -> Stored:
    """Read both keys in one MGET (atomic) and judge them (``judge``)."""
    trusted = trusted_by_id(trusted_keys)
    raw, line = client.mget([table_key(prefix), signature_key(prefix)])
    return judge(raw, line, trusted)


def _expected(value: bytes | None) -> bytes:
    return b"" if value is None else b"=" + value


def publish_table(
    client: redis.Redis,
    table: RouteTable,
    prefix: str = DEFAULT_PREFIX,
    *,
    signing_key: Ed25519PrivateKey,
    trusted_keys: Sequence[Ed25519PublicKey] | None = None,
) -> bool:
    """Store ``table`` signed with ``signing_key`` unless Redis already holds a table that
    counts with this version or a newer one; then announce it.

    ``trusted_keys`` are the keys whose signatures make a stored table count (default: the
    signing key's public key; pass the readers' keys, which must include it, so that a table
    signed by the other key of a rotation counts too).

    Returns True when the table was stored and announced, False when Redis already held the same
    or a newer version (a duplicate or out-of-order publish: nothing changes). Connection errors
    propagate as ``redis.RedisError`` (``PublishContended`` included) so that the caller can
    retry. ``TypeError`` when ``signing_key`` is not an Ed25519 private key: every table is
    signed.
    """
    if not isinstance(signing_key, Ed25519PrivateKey):
        raise TypeError(
            f"signing_key must be an Ed25519 private key, got {type(signing_key).__name__} "
            "(routing.keys.signing_key_from)"
        )
    data = table.to_json().encode("utf-8")
    line = sign(data, signing_key)
    own = key_id(signing_key.public_key())
    trusted = trusted_by_id(trusted_keys or (signing_key.public_key(),))
    if own not in trusted:
        raise ValueError(
            f"the signing key {own} is not among the trusted keys ({', '.join(trusted)}): "
            "readers given those keys would refuse every table it signs"
        )
    script = client.register_script(STORE_IF_UNCHANGED_LUA)
    keys = [table_key(prefix), signature_key(prefix)]
    for _ in range(ATTEMPTS):
        raw, held_line = client.mget(keys)
        stored = judge(raw, held_line, trusted)
        if stored.version is not None:
            if stored.version > table.version:
                return False
            if stored.version == table.version and (stored.signer == own or stored.raw != data):
                # The same version: nothing to do, unless these very bytes were signed by
                # another trusted key (a rotation), which this publisher re-signs.
                return False
        args = [channel(prefix), _expected(raw), _expected(held_line), data, line]
        if script(keys=keys, args=[*args, table.version]):
            return True
    raise PublishContended(
        f"the route table in Redis changed under {ATTEMPTS} publishes of version {table.version}"
    )


def stored_version(
    client: redis.Redis,
    prefix: str = DEFAULT_PREFIX,
    *,
    trusted_keys: Sequence[Ed25519PublicKey],
) -> int | None:
    """The version of the stored table a publisher with ``trusted_keys`` would keep, or None
    when Redis holds nothing that counts (the next publish replaces whatever is there)."""
    return read_stored(client, prefix, trusted_keys=trusted_keys).version
