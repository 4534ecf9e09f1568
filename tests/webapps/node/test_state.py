"""The pure life-cycle rules of one app on a node (no processes, no clock)."""

from __future__ import annotations

import pytest

from webapps.node.state import (
    BACKOFF_MAX,
    Admit,
    AppState,
    InvalidTransition,
    OnReload,
    OnRequest,
    Phase,
    admit,
    backoff_delay,
    victim,
)


def running(now: float = 0.0) -> AppState:
    state = AppState()
    assert state.on_request(now) == OnRequest.START
    state.on_ready(now)
    return state


def test_the_first_request_starts_and_the_next_ones_wait_for_it():
    state = AppState()
    assert state.on_request(0) == OnRequest.START
    assert state.on_request(0) == OnRequest.WAIT_START
    state.on_ready(1)
    assert state.on_request(1) == OnRequest.FORWARD


def test_a_failed_start_answers_at_once_until_the_backoff_passes():
    state = AppState()
    state.on_request(0)
    state.on_start_failed(0, "boom")
    assert state.on_request(0.1) == OnRequest.FAIL
    assert state.on_request(backoff_delay(1) + 0.01) == OnRequest.START


def test_the_backoff_grows_and_is_capped():
    assert [backoff_delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert backoff_delay(50) == BACKOFF_MAX


def test_a_crash_after_a_stable_run_forgets_earlier_failures():
    state = AppState(failures=4)
    state.on_request(0)
    state.on_ready(0)
    state.on_exited(100, "killed")
    assert state.phase == Phase.BACKOFF and state.failures == 1


def test_an_exit_while_stopping_is_no_failure():
    state = running()
    assert state.on_stop() is True
    state.on_exited(1, "")
    assert state.phase == Phase.STOPPED and state.failures == 0


def test_a_reload_before_the_signal_shares_it_and_one_after_queues_one_more():
    state = running()
    assert state.on_reload() == OnReload.HUP
    first = state.target(OnReload.HUP)
    assert state.on_reload() == OnReload.JOIN
    assert state.target(OnReload.JOIN) == first
    state.on_signalled()
    assert state.on_reload() == OnReload.QUEUE
    queued = state.target(OnReload.QUEUE)
    assert state.on_reload() == OnReload.QUEUE and state.target(OnReload.QUEUE) == queued
    assert state.on_ready(1) is True  # the queued restart must be signalled now
    assert state.restarts == first and state.phase == Phase.RELOADING
    state.on_signalled()
    assert state.on_ready(2) is False
    assert state.restarts == queued and state.phase == Phase.RUNNING


def test_a_reload_of_a_failed_app_lets_the_next_request_try_at_once():
    state = AppState()
    state.on_request(0)
    state.on_start_failed(0, "boom")
    assert state.on_reload() == OnReload.NOT_RUNNING
    assert state.on_request(0.01) == OnRequest.START


def test_only_a_running_app_is_idle():
    state = running(0)
    assert state.is_idle(10, 5) and not state.is_idle(10, None) and not state.is_idle(3, 5)
    state.on_reload()
    assert not state.is_idle(10, 5)


def test_a_ready_event_in_the_wrong_phase_is_a_bug():
    with pytest.raises(InvalidTransition):
        AppState().on_ready(0)


def test_every_spawn_and_every_hup_is_a_new_generation():
    state = AppState()
    assert state.generation == 0
    state.on_request(0)
    assert state.generation == 1  # the spawn
    state.on_ready(0)
    assert state.on_reload() == OnReload.HUP
    assert state.on_reload() == OnReload.JOIN
    assert state.generation == 1  # not signalled yet: the coalesced reloads share one HUP
    state.on_signalled()
    assert state.generation == 2
    assert state.on_reload() == OnReload.QUEUE
    assert state.on_ready(1) is True  # the queued restart is owed
    state.on_signalled()
    assert state.generation == 3


# --- the cap on running apps ------------------------------------------------------------------


def test_apps_start_while_slots_are_free_and_queue_for_slots_being_freed():
    assert admit(position=0, holding=1, stopping=0, cap=2) == Admit.START
    assert admit(position=1, holding=1, stopping=0, cap=2) == Admit.EVICT
    # two at the cap, one of them on its way out: the first in the queue waits for that slot
    assert admit(position=0, holding=2, stopping=1, cap=2) == Admit.WAIT
    assert admit(position=1, holding=2, stopping=1, cap=2) == Admit.EVICT
    assert admit(position=5, holding=100, stopping=0, cap=None) == Admit.START


def test_the_least_recently_used_idle_app_is_stopped_first():
    apps = [("a", 5.0, False), ("b", 1.0, True), ("c", 3.0, False)]
    assert victim(apps) == "c"  # b is older but busy
    assert victim([("b", 1.0, True)]) is None
    assert victim([("b", 1.0, True), ("d", 2.0, True)], allow_busy=True) == "b"
    assert victim([], allow_busy=True) is None


def test_an_app_holds_a_slot_from_its_start_until_its_process_exited():
    state = AppState()
    assert not state.holding and state.wants_start(0)
    state.on_request(0)
    assert state.holding and not state.wants_start(0)  # starting counts
    state.on_ready(0)
    state.on_stop()
    assert state.holding  # stopping still has a process
    state.on_exited(1, "")
    assert not state.holding and state.wants_start(1)


def test_an_app_in_backoff_wants_a_start_only_once_the_delay_passed():
    state = AppState()
    state.on_request(0)
    state.on_start_failed(0, "boom")
    assert not state.holding
    assert not state.wants_start(0.1)
    assert state.wants_start(backoff_delay(1))
