"""routing.versions: the hybrid-clock version and the reader's acceptance rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from routing.table import InvalidTable, RouteTable
from routing.versions import MAX_VERSION, microseconds, next_version, supersedes
from tests.routing.support import make_table

NOW = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_microseconds_counts_from_the_unix_epoch_exactly():
    assert microseconds(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert microseconds(NOW) == 1772366400_123456


def test_microseconds_is_the_same_instant_in_any_time_zone():
    assert microseconds(NOW.astimezone(timezone(timedelta(hours=-5)))) == microseconds(NOW)


def test_a_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="no time zone"):
        microseconds(datetime(2026, 3, 1))


def test_the_next_version_is_the_clock_when_the_database_is_behind_it():
    assert next_version(7, NOW) == microseconds(NOW)


def test_the_next_version_is_one_past_the_stored_one_when_the_clock_is_behind():
    # The clock stepped back, or changes came faster than one per microsecond.
    stored = microseconds(NOW) + 1_000_000
    assert next_version(stored, NOW) == stored + 1


def test_versions_made_in_one_microsecond_still_increase():
    versions = [0]
    for _ in range(5):
        versions.append(next_version(versions[-1], NOW))
    assert versions[1:] == [microseconds(NOW) + i for i in range(5)]


def test_after_a_restore_the_next_version_passes_every_version_made_before():
    # Versions made up to an hour ago; the database is restored to a backup from a day ago.
    made = 0
    for minutes in range(24 * 60, 59, -7):
        made = next_version(made, NOW - timedelta(minutes=minutes))
    backup = next_version(0, NOW - timedelta(days=1))
    assert backup < made
    assert next_version(backup, NOW) > made


def test_a_version_of_the_counter_scheme_is_passed_by_the_first_clock_version():
    assert next_version(41, NOW) > 10**15 > 41


@pytest.mark.parametrize("stored", [-1, True, 1.5, "3"])
def test_a_stored_version_that_is_not_a_non_negative_integer_is_refused(stored):
    with pytest.raises(ValueError, match="non-negative integer"):
        next_version(stored, NOW)


def test_a_version_beyond_2_53_is_refused():
    with pytest.raises(ValueError, match="exceed"):
        next_version(MAX_VERSION, NOW)
    assert next_version(MAX_VERSION - 1, NOW) == MAX_VERSION


def test_a_table_beyond_2_53_is_invalid():
    assert make_table(MAX_VERSION).version == MAX_VERSION
    with pytest.raises(InvalidTable, match="above"):
        RouteTable.from_json(make_table(1).to_json().replace('"version":1', f'"version":{2**53}'))


def test_a_reader_takes_only_a_greater_version():
    assert supersedes(5, None)
    assert supersedes(0, None)
    assert supersedes(6, 5)
    assert not supersedes(5, 5)
    assert not supersedes(4, 5)
