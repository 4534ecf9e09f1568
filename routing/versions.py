"""Route-table versions: how the publisher picks the next one and which one a reader takes.

A version is a hybrid clock: the number of microseconds since the Unix epoch at the moment the
pool changed, pushed one past the previous version whenever the clock has not moved beyond it.
It is an ordinary integer in the table's JSON, compared as an integer.

Rules (tests in tests/routing/test_versions.py):

1. ``next_version(stored, now) = max(stored + 1, microseconds(now))``. Within one database the
   version only goes up, whatever the clock does; across a restore it starts again from the
   clock, which is past every version handed out before the restore (every one of them was at
   most ``microseconds`` of the moment it was made, plus one per change made within the same
   microsecond). So a database restored from a backup, a Redis that lost its data and readers
   that hold a higher version in memory or on disk never freeze routing: the next change's
   version is above all of them.
2. A reader takes a table only if its version is greater than the one it holds
   (``supersedes``). A late publish of an older table carries an older version and is refused.
3. Versions stay below ``2**53`` (``MAX_VERSION``), so they are exact in a JavaScript number, in
   Lua and in any JSON parser that reads numbers as doubles. The clock reaches that in the year
   2255.
4. The one assumption: the clocks of the machines that make pool changes are synchronised (NTP)
   to within the time between two changes that must be ordered across a restore. A publisher
   whose clock runs behind the highest version readers hold is refused until its clock passes
   it (``manage.py routing publish --bump`` moves past it at once); see
   docs/decisions/0036-versions-are-a-hybrid-clock.md.

Versions of the earlier scheme (a counter from 1) are far below any clock value: the first change
after an upgrade moves to the clock, and readers take it.

Pure: no I/O, no settings, no Django, no Redis. The caller passes the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["MAX_VERSION", "microseconds", "next_version", "supersedes"]

MAX_VERSION = 2**53 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def microseconds(now: datetime) -> int:
    """Microseconds from the Unix epoch to ``now`` (an aware datetime), exactly."""
    if not isinstance(now, datetime):
        raise TypeError(f"now must be a datetime, got {type(now).__name__}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now {now.isoformat()} has no time zone")
    return (now - _EPOCH) // _MICROSECOND


def next_version(stored: int, now: datetime) -> int:
    """The version to commit for a pool change made at ``now`` when the database holds
    ``stored``: ``max(stored + 1, microseconds(now))`` (rule 1)."""
    if isinstance(stored, bool) or not isinstance(stored, int) or stored < 0:
        raise ValueError(f"stored version {stored!r} must be a non-negative integer")
    version = max(stored + 1, microseconds(now))
    if version > MAX_VERSION:
        raise ValueError(f"version {version} would exceed {MAX_VERSION} (2**53 - 1)")
    return version


def supersedes(offered: int, held: int | None) -> bool:
    """True when a reader holding version ``held`` (None: no table) must take a table of
    version ``offered`` (rule 2): only a greater version replaces the one held."""
    return held is None or offered > held
