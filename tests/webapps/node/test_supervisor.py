"""The supervisor with real gunicorn processes, driven directly (no HTTP front)."""

from __future__ import annotations

import contextlib
import json
import os
import site
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support import wait_until
from tests.webapps.node.support import answer_app, every_worker_ready, get_unix, write_app
from webapps.node.logs import DEFAULT_KEEP, tail
from webapps.node.spec import AppSpec
from webapps.node.supervisor import AppUnavailable

BROKEN = """
    raise RuntimeError("boom at import: missing setting")
"""


def spec_for(source, owner="alice", **kw) -> AppSpec:
    return AppSpec(name=source.name, source_directory=str(source), owner=owner, **kw)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_it_starts_an_app_on_first_request_and_serves_it(
    supervisor_factory, home_root, loop_thread
):
    sup = supervisor_factory()
    source = write_app(home_root, "Alice", "one.apps.test", answer_app("hello v1"))
    assert sup.status() == []
    sock = loop_thread.run(sup.socket_for(spec_for(source, owner="Alice")))
    assert get_unix(sock) == (200, "hello v1")
    assert sup.running() == ["one.apps.test"]


def test_it_gives_apps_a_clean_environment(supervisor_factory, home_root, loop_thread):
    sup = supervisor_factory(base_env={**os.environ, "SECRET_KEY": "s" * 40, "DATABASE_URL": "x"})
    source = write_app(
        home_root,
        "alice",
        "env.apps.test",
        """
        import json, os
        def application(environ, start_response):
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(dict(os.environ)).encode()]
    """,
    )
    sock = loop_thread.run(sup.socket_for(spec_for(source)))
    env = json.loads(get_unix(sock)[1])
    assert "SECRET_KEY" not in env and "DATABASE_URL" not in env and "REDIS_URL" not in env
    assert env["HOME"] == str((home_root / "alice").resolve())
    assert os.getcwd() != str(source)


def test_it_reloads_to_new_code(supervisor_factory, home_root, loop_thread):
    sup = supervisor_factory()
    source = write_app(home_root, "alice", "two.apps.test", answer_app("v1"))
    spec = spec_for(source)
    sock = loop_thread.run(sup.socket_for(spec))
    assert get_unix(sock)[1] == "v1"
    write_app(home_root, "alice", "two.apps.test", answer_app("v2"))
    outcome = loop_thread.run(sup.reload(spec))
    assert outcome.ok, outcome
    assert get_unix(sock)[1] == "v2"


def test_no_request_fails_during_a_reload(supervisor_factory, home_root, loop_thread):
    sup = supervisor_factory()
    source = write_app(home_root, "alice", "steady.apps.test", answer_app("v1"))
    spec = spec_for(source)
    sock = loop_thread.run(sup.socket_for(spec))
    seen: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def stream():
        while not stop.is_set():
            try:
                status, body = get_unix(sock)
                assert status == 200
                seen.append(body)
            except BaseException as exc:  # recorded, asserted below
                failures.append(exc)

    threads = [threading.Thread(target=stream) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(seen) > 20, what="a steady stream")
        write_app(home_root, "alice", "steady.apps.test", answer_app("v2"))
        assert loop_thread.run(sup.reload(spec)).ok
        mark = len(seen)
        wait_until(lambda: len(seen) > mark + 20, what="requests after the reload")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert failures == []
    assert "v1" in seen
    # Every request sent after the reload answered runs the new code; only the three that
    # may have been in flight at that moment (one per thread) may have been the old one's.
    assert set(seen[mark + len(threads) :]) == {"v2"}


def test_a_long_request_on_an_old_worker_does_not_hold_a_reload_up(
    supervisor_factory, home_root, tmp_path, loop_thread
):
    entered, release = tmp_path / "entered", tmp_path / "release"
    sup = supervisor_factory()
    source = write_app(
        home_root,
        "alice",
        "long.apps.test",
        f"""
        import os, time
        def application(environ, start_response):
            if environ["PATH_INFO"] == "/long":
                open({str(entered)!r}, "w").close()
                while not os.path.exists({str(release)!r}):
                    time.sleep(0.01)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"v1"]
        """,
    )
    spec = spec_for(source)
    sock = loop_thread.run(sup.socket_for(spec))
    long_answer: list = []
    long_request = threading.Thread(
        target=lambda: long_answer.append(get_unix(sock, "/long", timeout=120))
    )
    long_request.start()
    try:
        wait_until(entered.exists, 30, what="the long request on a worker")
        write_app(home_root, "alice", "long.apps.test", answer_app("v2"))
        outcome = loop_thread.run(sup.reload(spec))
        assert outcome.ok, outcome
        assert not release.exists() and long_request.is_alive()  # still in its request
        assert get_unix(sock)[1] == "v2"
    finally:
        release.touch()
        long_request.join(60)
    assert long_answer == [(200, "v1")]  # the old worker finished its request, then left


def test_an_import_error_on_reload_reports_the_traceback_and_fixing_it_recovers(
    supervisor_factory, home_root, loop_thread
):
    sup = supervisor_factory()
    source = write_app(home_root, "alice", "bad.apps.test", answer_app("good"))
    spec = spec_for(source)
    loop_thread.run(sup.socket_for(spec))
    # A start serves from its first worker: let the second import the good code too (one that
    # imported the broken code would stop gunicorn before the reload, as it does on any boot).
    every_worker_ready(lambda: sup.status()[0], spec.workers)
    write_app(home_root, "alice", "bad.apps.test", BROKEN)
    outcome = loop_thread.run(sup.reload(spec))
    assert not outcome.ok
    assert "failed to load" in outcome.message
    assert "boom at import: missing setting" in outcome.log_tail
    with pytest.raises(AppUnavailable):
        loop_thread.run(sup.socket_for(spec))

    write_app(home_root, "alice", "bad.apps.test", answer_app("fixed"))
    assert loop_thread.run(sup.reload(spec)).ok
    sock = loop_thread.run(sup.socket_for(spec))
    assert get_unix(sock)[1] == "fixed"


def test_an_app_that_cannot_start_is_unavailable_naming_its_error_log(
    supervisor_factory, home_root, loop_thread
):
    sup = supervisor_factory()
    source = write_app(home_root, "alice", "nostart.apps.test", BROKEN)
    with pytest.raises(AppUnavailable) as caught:
        loop_thread.run(sup.socket_for(spec_for(source)))
    assert caught.value.name == "nostart.apps.test"
    assert caught.value.error_log.name == "nostart.apps.test.error.log"
    assert "boom at import" in tail(caught.value.error_log)


def test_a_failed_app_is_not_respawned_on_every_request(supervisor_factory, home_root, loop_thread):
    sup = supervisor_factory()
    source = write_app(home_root, "alice", "loop.apps.test", BROKEN)
    spec = spec_for(source)
    for _ in range(6):
        with pytest.raises(AppUnavailable):
            loop_thread.run(sup.socket_for(spec))
    # The back-off answers the later requests at once: gunicorn was started once (twice if a
    # loaded machine let the first 0.5 s back-off pass between two requests), never six times.
    assert tail(sup.log_file(spec.name, "server"), 100).count("started gunicorn") <= 2


def test_a_reload_of_an_app_not_running_reports_ok(supervisor_factory, home_root, loop_thread):
    sup = supervisor_factory()
    source = write_app(home_root, "alice", "idle.apps.test", answer_app("v1"))
    outcome = loop_thread.run(sup.reload(spec_for(source)))
    assert outcome.ok and "not running" in outcome.message
    assert sup.running() == []


def test_concurrent_reloads_coalesce(supervisor_factory, home_root, loop_thread):
    sup = supervisor_factory(coalesce_window=0.2)
    source = write_app(home_root, "alice", "burst.apps.test", answer_app("v1"))
    spec = spec_for(source)
    loop_thread.run(sup.socket_for(spec))
    before = sup.status()[0]["restarts"]
    futures = [loop_thread.submit(sup.reload(spec)) for _ in range(8)]
    assert all(f.result(60).ok for f in futures)
    assert sup.status()[0]["restarts"] - before == 1


def test_a_symlink_escaping_the_home_is_refused(
    supervisor_factory, home_root, short_tmp, loop_thread
):
    sup = supervisor_factory()
    outside = short_tmp / "elsewhere"
    outside.mkdir()
    (outside / "wsgi.py").write_text(answer_app("stolen"))
    link = home_root / "alice" / "evil.apps.test"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    spec = spec_for(link)
    with pytest.raises(AppUnavailable):
        loop_thread.run(sup.socket_for(spec))
    assert "outside the owner's home" in tail(sup.log_file(spec.name, "error"))
    assert "started gunicorn" not in tail(sup.log_file(spec.name, "server"))


def test_it_stops_an_idle_app(supervisor_factory, home_root, loop_thread):
    sup = supervisor_factory(idle_timeout=0.5)
    reaper = loop_thread.submit(sup.reap_idle())
    try:
        source = write_app(home_root, "alice", "sleepy.apps.test", answer_app("zzz"))
        loop_thread.run(sup.socket_for(spec_for(source)))
        pid = sup.status()[0]["pid"]
        wait_until(lambda: sup.status()[0]["phase"] == "stopped", timeout=20, what="idle stop")
        wait_until(lambda: not alive(pid), what="process gone")
    finally:
        reaper.cancel()


def test_a_crashed_app_is_restarted_on_demand_after_a_backoff(
    supervisor_factory, home_root, loop_thread
):
    sup = supervisor_factory()
    source = write_app(home_root, "alice", "crash.apps.test", answer_app("alive"))
    spec = spec_for(source)
    loop_thread.run(sup.socket_for(spec))
    pid = sup.status()[0]["pid"]
    os.killpg(pid, 9)
    wait_until(lambda: sup.status()[0]["phase"] == "backoff", what="crash noticed")
    sock = wait_until(lambda: _try_socket(sup, spec, loop_thread), timeout=20, what="restart")
    assert get_unix(sock)[1] == "alive"
    assert sup.status()[0]["pid"] != pid


def _try_socket(sup, spec, loop_thread):
    try:
        return loop_thread.run(sup.socket_for(spec))
    except AppUnavailable:
        return None


def test_ten_megabytes_of_stdout_stay_within_the_log_bound(
    supervisor_factory, home_root, loop_thread
):
    sup = supervisor_factory(log_max_bytes=256 * 1024)
    source = write_app(
        home_root,
        "alice",
        "loud.apps.test",
        """
        import sys
        def application(environ, start_response):
            line = "x" * 1023 + "\\n"
            for _ in range(10 * 1024):
                sys.stdout.write(line)
            sys.stdout.write("end of the loud output\\n")
            sys.stdout.flush()
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"done"]
    """,
    )
    spec = spec_for(source)
    sock = loop_thread.run(sup.socket_for(spec))
    assert get_unix(sock, timeout=60) == (200, "done")
    server_log = sup.log_file(spec.name, "server")

    def last_line_logged() -> bool:
        for path in (server_log, server_log.with_name(server_log.name + ".1")):
            with contextlib.suppress(FileNotFoundError):
                if b"end of the loud output" in path.read_bytes():
                    return True
        return False

    # The node drains the app's stdout pipe on its own loop, rotating as it goes: measure once
    # the last line has landed, so that no rotation is under way while the files are listed.
    wait_until(last_line_logged, 30, what="the app's last stdout line in its server log")
    sizes = {}  # name -> size; a file rotated away between listing and stat is skipped
    for path in server_log.parent.glob(server_log.name + "*"):
        with contextlib.suppress(FileNotFoundError):
            sizes[path.name] = path.stat().st_size
    plain = sum(size for name, size in sizes.items() if not name.endswith(".gz"))
    compressed = [size for name, size in sizes.items() if name.endswith(".gz")]
    # The bound of webapps/node/logs.py: the current file and .1, plus keep - 2 compressed ones.
    assert 0 < plain <= 2 * 256 * 1024
    assert len(compressed) <= DEFAULT_KEEP - 2
    assert all(size <= 256 * 1024 for size in compressed)


def test_stopping_the_supervisor_leaves_no_process(supervisor_factory, home_root, loop_thread):
    sup = supervisor_factory()
    pids = []
    for domain in ("a.apps.test", "b.apps.test"):
        source = write_app(home_root, "alice", domain, answer_app(domain))
        loop_thread.run(sup.socket_for(spec_for(source)))
        every_worker_ready(lambda domain=domain: _app(sup, domain))
    pids = [a["pid"] for a in sup.status()]
    workers = [w for pid in pids for w in _children(pid)]
    assert len(workers) == 4
    loop_thread.run(sup.stop_all())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in pids + workers):
        time.sleep(0.05)
    assert [p for p in pids + workers if alive(p)] == []


def _app(sup, name: str) -> dict:
    return next(a for a in sup.status() if a["name"] == name)


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_new_supervisor_kills_the_apps_of_a_killed_one(
    supervisor_factory, home_root, loop_thread
):
    first = supervisor_factory()
    source = write_app(home_root, "alice", "orphan.apps.test", answer_app("orphan"))
    loop_thread.run(first.socket_for(spec_for(source)))
    pid = first.status()[0]["pid"]
    workers = _children(pid)
    # The node dies without stopping anything (SIGKILL): its app processes live on.
    supervisor_factory()  # same run directory
    wait_until(lambda: not any(alive(p) for p in [pid, *workers]), what="orphans killed")


def test_a_reload_after_the_wsgi_entry_changed_restarts_with_it(
    supervisor_factory, home_root, loop_thread
):
    sup = supervisor_factory()
    source = write_app(home_root, "alice", "moved.apps.test", answer_app("old entry"))
    write_app(home_root, "alice", "moved.apps.test", answer_app("new entry"), entry_file="app2.py")
    sock = loop_thread.run(sup.socket_for(spec_for(source)))
    outcome = loop_thread.run(sup.reload(spec_for(source, wsgi_entry="app2:application")))
    assert outcome.ok and "new settings" in outcome.message
    assert get_unix(sock)[1] == "new entry"


def test_an_app_with_a_virtualenv_runs_on_its_python(supervisor_factory, home_root, loop_thread):
    venv = home_root / "alice" / ".virtualenvs" / "site"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # gunicorn comes from the project's environment (a real user would pip install it)
    packages = next(venv.glob("lib/python*/site-packages"))
    (packages / "node-test.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    sup = supervisor_factory()
    source = write_app(
        home_root,
        "alice",
        "venv.apps.test",
        """
        import sys
        def application(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [sys.prefix.encode()]
    """,
    )
    sock = loop_thread.run(sup.socket_for(spec_for(source, virtualenv_path=str(venv))))
    assert get_unix(sock)[1] == str(venv)


def test_a_virtualenv_outside_the_home_is_refused(supervisor_factory, home_root, loop_thread):
    sup = supervisor_factory()
    source = write_app(home_root, "alice", "badvenv.apps.test", answer_app("x"))
    spec = spec_for(source, virtualenv_path=sys.prefix)
    with pytest.raises(AppUnavailable):
        loop_thread.run(sup.socket_for(spec))
    assert "virtualenv" in tail(sup.log_file(spec.name, "error"))


def test_stopping_an_app_that_is_still_starting_leaves_no_process(
    supervisor_factory, home_root, loop_thread
):
    sup = supervisor_factory(stop_timeout=3.0)
    source = write_app(home_root, "alice", "slowboot.apps.test", "import time\ntime.sleep(600)\n")
    pending = loop_thread.submit(sup.socket_for(spec_for(source)))
    pid = wait_until(lambda: sup.status() and sup.status()[0]["pid"], what="a starting process")
    assert sup.status()[0]["phase"] == "starting"
    workers = _children(pid)
    loop_thread.run(sup.stop_all())
    with pytest.raises(AppUnavailable):
        pending.result(30)
    wait_until(lambda: not any(alive(p) for p in [pid, *workers]), what="nothing left")
