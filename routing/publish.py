"""Writing route tables to Redis: store only if newer, then announce the new version.

Pure redis-py, no Django: the Celery task, the ``routing publish`` command and the benchmark call
:func:`publish_table` with a client of their own.

Invariants (see docs/pool.md, "Redis contract"):
- The stored table's version never goes down. The compare and the write happen inside one Lua
  script, so two publishers racing (an old Celery task delivered late, a duplicate delivery, the
  periodic republish) cannot interleave between reading the stored version and writing.
- A version is announced on ``<prefix>routes:changed`` only when it was stored, so a subscriber
  that re-reads on every message never sees a message for a table it cannot find.
- A stored value without the table's shape (a JSON object with a numeric ``version``, a string
  ``algorithm`` and a list of ``backends``) counts as absent and is replaced: subscribers ignore
  it anyway, and the next publish must repair it. A well-shaped table with a version beyond the
  database's is kept (it may be newer); ``manage.py routing publish --bump`` moves past it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

    from routing.table import RouteTable

DEFAULT_PREFIX = "hosting:"

# KEYS[1] the table key, KEYS[2] the change channel; ARGV[1] the version, ARGV[2] the table JSON.
# Returns 1 when stored and announced, 0 when the stored version is the same or newer.
# A stored value counts only if it has the table's shape (numeric version, string algorithm,
# list of backends): junk written by hand, even with a huge "version", is replaced.
STORE_IF_NEWER_LUA = """
local stored = redis.call('GET', KEYS[1])
if stored then
  local ok, t = pcall(cjson.decode, stored)
  if ok and type(t) == 'table' and type(t['version']) == 'number'
     and type(t['algorithm']) == 'string' and type(t['backends']) == 'table'
     and t['version'] >= tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1
"""


def table_key(prefix: str = DEFAULT_PREFIX) -> str:
    """The Redis key holding the route table as JSON."""
    return f"{prefix}routes"


def channel(prefix: str = DEFAULT_PREFIX) -> str:
    """The pub/sub channel on which each newly stored version number is announced."""
    return f"{prefix}routes:changed"


def publish_table(client: redis.Redis, table: RouteTable, prefix: str = DEFAULT_PREFIX) -> bool:
    """Store ``table`` unless Redis already holds this version or a newer one; then announce it.

    Returns True when the table was stored and announced, False when Redis already held the same
    or a newer version (a duplicate or out-of-order publish: nothing changes). Connection errors
    propagate as ``redis.RedisError`` so that the caller can retry.
    """
    script = client.register_script(STORE_IF_NEWER_LUA)
    keys = [table_key(prefix), channel(prefix)]
    stored = script(keys=keys, args=[table.version, table.to_json()])
    return bool(stored)


def stored_version(client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> int | None:
    """The version the store-if-newer script compares against, or None when Redis holds no
    value with the table's shape (the script then replaces whatever is there)."""
    raw = client.get(table_key(prefix))
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        return None
    if not isinstance(doc.get("algorithm"), str) or not isinstance(doc.get("backends"), list):
        return None
    return version
