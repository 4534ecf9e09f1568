"""Sign-in back-off per username, on top of the lockout per username and address.

django-axes locks a (username, address) pair after ``AXES_FAILURE_LIMIT`` failures, so one
address guessing a password is stopped and the owner, from any other address, is not. A guess
spread over many addresses gets past that, so the same failures (axes' own records, within
``AXES_COOLOFF_TIME``) are also counted per username across addresses, each address counting at
most ``AXES_FAILURE_LIMIT``: its attempts after its own lockout add nothing, so one address, or
two, can never slow the owner down. Past ``SIGNIN_BACKOFF_FREE`` counted failures, every
attempt for that username must wait, after the last failure, a time that doubles with each
further failure, at most ``SIGNIN_BACKOFF_MAX`` seconds; an attempt that comes too early is
refused (429 on the sign-in page) before its password is checked, and is not recorded.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Max, Sum


def now() -> float:
    return time.time()


def wait_seconds(counted: int, free: int, maximum: float) -> float:
    """How long after the last failure the next attempt must wait: nothing up to ``free``
    counted failures, then 1 s, doubling with each one, at most ``maximum``."""
    if counted <= free:
        return 0.0
    return min(maximum, math.ldexp(1.0, min(counted - free - 1, 64)))


def counted_failures(per_address: list[int], per_address_limit: int) -> int:
    return sum(min(n, per_address_limit) for n in per_address)


def retry_after(username: str) -> int:
    """Seconds until ``username`` (any spelling) may try to sign in again; 0: now."""
    moment = now()
    since = datetime.fromtimestamp(moment, UTC) - timedelta(hours=settings.AXES_COOLOFF_TIME)
    rows = list(
        AccessAttempt.objects.filter(username__iexact=username, attempt_time__gte=since)
        .values("ip_address")
        .annotate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
    )
    if not rows:
        return 0
    counted = counted_failures([row["failures"] for row in rows], settings.AXES_FAILURE_LIMIT)
    wait = wait_seconds(counted, settings.SIGNIN_BACKOFF_FREE, settings.SIGNIN_BACKOFF_MAX)
    last = max(row["last"] for row in rows).timestamp()
    return max(0, math.ceil(last + wait - moment))


def message(seconds: int) -> str:
    return (
        "Too many failed sign-ins for this account from several addresses: "
        f"wait {seconds} s before trying again."
    )
