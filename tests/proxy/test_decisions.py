"""The engine's cold-path decisions (rules R, K and T of proxy/core.py), one table each."""

from __future__ import annotations

import pytest

from proxy import core
from proxy.core import ClientState, Failure, Limits, Timer


def head(method=b"GET", body=None, chunked=False):
    fields = [(b"Host", b"a")]
    if body is not None:
        fields.append((b"Content-Length", b"%d" % body))
    if chunked:
        fields.append((b"Transfer-Encoding", b"chunked"))
    return core.validate_request(method, b"/", "1.1", fields, True, Limits())


# Rule R. Columns: request, failure, response started, attempts made, max_attempts,
# candidates -> may it go to the next candidate?
RETRY = [
    # nothing was sent: any request may go again
    (head(), Failure.CONNECT, False, 1, 3, 3, True),
    (head(b"POST", body=3), Failure.CONNECT, False, 1, 3, 3, True),
    (head(b"POST", chunked=True), Failure.CONNECT, False, 2, 3, 3, True),
    # the upstream may have seen it: only idempotent requests without a body
    (head(), Failure.CLOSED_UNANSWERED, False, 1, 3, 3, True),
    (head(b"HEAD"), Failure.CLOSED_UNANSWERED, False, 1, 3, 3, True),
    (head(b"DELETE"), Failure.CLOSED_UNANSWERED, False, 1, 3, 3, True),
    (head(b"POST"), Failure.CLOSED_UNANSWERED, False, 1, 3, 3, False),  # a POST: never twice
    (head(b"POST", body=3), Failure.CLOSED_UNANSWERED, False, 1, 3, 3, False),
    (head(b"PATCH"), Failure.CLOSED_UNANSWERED, False, 1, 3, 3, False),
    (head(b"PUT", body=3), Failure.CLOSED_UNANSWERED, False, 1, 3, 3, False),  # body gone
    (head(b"PUT", chunked=True), Failure.CLOSED_UNANSWERED, False, 1, 3, 3, False),
    # an answer began, or the failure is of the answer itself: final
    (head(), Failure.CLOSED_ANSWERING, False, 1, 3, 3, False),
    (head(), Failure.INVALID, False, 1, 3, 3, False),
    (head(), Failure.TIMEOUT, False, 1, 3, 3, False),
    (head(), Failure.CONNECT, True, 1, 3, 3, False),
    (head(), Failure.CLOSED_UNANSWERED, True, 1, 3, 3, False),
    # attempts: max_attempts and the candidates bound them; a lone candidate gets a second try
    (head(), Failure.CONNECT, False, 3, 3, 3, False),
    (head(), Failure.CONNECT, False, 2, 3, 2, False),
    (head(), Failure.CONNECT, False, 1, 3, 1, True),
    (head(), Failure.CLOSED_UNANSWERED, False, 1, 3, 1, True),
    (head(), Failure.CONNECT, False, 2, 3, 1, False),
    (head(), Failure.CONNECT, False, 1, 1, 3, False),
    (head(), Failure.CONNECT, False, 4, 9, 5, True),
]


@pytest.mark.parametrize(
    ("request_head", "failure", "started", "attempt", "most", "n", "ok"), RETRY
)
def test_retry(request_head, failure, started, attempt, most, n, ok):
    assert (
        core.may_retry(
            request_head,
            failure,
            response_started=started,
            attempt=attempt,
            max_attempts=most,
            candidates=n,
        )
        is ok
    )


def test_a_post_is_never_sent_twice_whatever_the_attempts():
    for method, body in ((b"POST", None), (b"POST", 10), (b"PATCH", None), (b"PUT", 10)):
        for attempt in range(5):
            assert not core.may_retry(
                head(method, body=body),
                Failure.CLOSED_UNANSWERED,
                response_started=False,
                attempt=attempt,
                max_attempts=10,
                candidates=10,
            )


# Rule K, client side. Columns: asked, request read, closing, our error status -> keep?
KEEP_CLIENT = [
    (True, True, False, 0, True),
    (True, True, False, 404, True),  # our 4xx pages keep the connection
    (True, True, False, 499, True),
    (True, True, False, 502, False),  # our 5xx pages close it
    (True, True, False, 503, False),
    (False, True, False, 0, False),  # the client said close (or upgrades)
    (True, False, False, 0, False),  # the rest of the body is drained, not parsed
    (True, True, True, 0, False),  # shutting down, or closing after an error
    (True, True, True, 404, False),
]


@pytest.mark.parametrize(("asked", "read", "closing", "error", "keep"), KEEP_CLIENT)
def test_keep_client(asked, read, closing, error, keep):
    got = core.keep_client(asked=asked, request_done=read, closing=closing, error_status=error)
    assert got is keep


# Rule K, upstream side. Columns: upstream keep-alive, request sent whole, method, status.
REUSE_UPSTREAM = [
    (True, True, b"GET", 200, True),
    (True, True, b"POST", 500, True),
    (False, True, b"GET", 200, False),  # the upstream said close, or framed by closing
    (True, False, b"POST", 200, False),  # it answered before the whole body went out
    (True, True, b"HEAD", 200, False),  # llhttp still waits for the body HEAD never gets
    (True, True, b"HEAD", 404, False),
    (True, True, b"HEAD", 204, True),
    (True, True, b"HEAD", 304, True),
    (True, True, b"HEAD", 101, True),
]


@pytest.mark.parametrize(("keep_alive", "done", "method", "status", "reuse"), REUSE_UPSTREAM)
def test_reuse_upstream(keep_alive, done, method, status, reuse):
    got = core.reuse_upstream(
        keep_alive=keep_alive, request_done=done, method=method, status=status
    )
    assert got is reuse


# Rule T. Client: state, reading a body -> timer.
CLIENT_TIMERS = [
    (ClientState.IDLE, False, Timer.IDLE),
    (ClientState.HEAD, False, Timer.HEADER),
    (ClientState.BUSY, False, Timer.NONE),
    (ClientState.BUSY, True, Timer.BODY),
    (ClientState.TUNNEL, False, Timer.NONE),
    (ClientState.LINGER, False, Timer.LINGER),
    (ClientState.CLOSED, False, Timer.NONE),
]


@pytest.mark.parametrize(("state", "reading", "timer"), CLIENT_TIMERS)
def test_client_timer(state, reading, timer):
    assert core.client_timer(state, reading) is timer


def test_every_client_state_has_a_timer_rule():
    assert {row[0] for row in CLIENT_TIMERS} == set(ClientState)


# Upstream: request sent whole, response bytes arrived -> timer.
UPSTREAM_TIMERS = [
    (False, False, Timer.NONE),  # the request body still streams: the client's timer runs
    (False, True, Timer.NONE),
    (True, False, Timer.FIRST_BYTE),
    (True, True, Timer.READ),
]


@pytest.mark.parametrize(("done", "got", "timer"), UPSTREAM_TIMERS)
def test_upstream_timer(done, got, timer):
    assert core.upstream_timer(request_done=done, got_bytes=got) is timer


def test_timer_seconds_come_from_the_settings_they_name():
    seconds = core.timer_seconds(header_timeout=1.0, idle_timeout=2.0, first_byte_timeout=3.0)
    assert len(seconds) == len(Timer)
    assert {t: seconds[t] for t in Timer} == {
        Timer.NONE: 0.0,
        Timer.HEADER: 1.0,
        Timer.IDLE: 2.0,
        Timer.BODY: 2.0,
        Timer.LINGER: core.LINGER_SECONDS,
        Timer.FIRST_BYTE: 3.0,
        Timer.READ: 2.0,
    }
