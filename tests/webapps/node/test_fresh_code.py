"""A reload and a cold start run the code on disk, whatever the edit's size and timing, and every
response names the generation of the process that produced it."""

from __future__ import annotations

import math
import os
import py_compile
import subprocess
import sys
import time
from pathlib import Path

from tests.webapps.node.support import (
    UnixHTTPConnection,
    every_worker_ready,
    get_unix,
    get_unix_response,
    write_app,
)
from webapps.node.outcome import Result
from webapps.node.spec import GENERATION_HEADER, AppSpec

ROUNDS = 12  # each round edits and reloads once; a stale cache would fail every round

MODULE_APP = """
    import appversion
    def application(environ, start_response):
        body = appversion.TEXT.encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
"""


def module_app(home_root: Path, domain: str) -> tuple[AppSpec, Path]:
    source = write_app(home_root, "alice", domain, MODULE_APP)
    return AppSpec(name=domain, source_directory=str(source), owner="alice"), source


def set_version(source: Path, text: str, mtime: float) -> Path:
    path = source / "appversion.py"
    path.write_text(f"TEXT = {text!r}\n")
    os.utime(path, (mtime, mtime))
    return path


def plain_python_imports(source: Path) -> str:
    """What the ordinary import system (mtime- and size-checked bytecode) loads from ``source``."""
    return subprocess.run(
        [sys.executable, "-c", "import appversion; print(appversion.TEXT)"],
        cwd=source,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()


def same_second_same_size_edit(source: Path, old: str, new: str) -> None:
    """``old`` is on disk and loaded; replace it by ``new`` (same size) within the same second
    as ``old``'s mtime, with an ordinary bytecode cache entry of ``old`` beside it, as the
    ordinary import of ``old`` leaves it. The ordinary import system then loads ``old``."""
    assert len(old) == len(new)
    second = math.floor(time.time())
    path = set_version(source, old, second + 0.1)
    py_compile.compile(str(path), invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    set_version(source, new, second + 0.7)


def test_a_reload_runs_an_edit_that_keeps_the_size_within_the_same_second(
    supervisor_factory, home_root, loop_thread
):
    sup = supervisor_factory()
    spec, source = module_app(home_root, "same-second.apps.test")
    set_version(source, "v000", time.time())
    sock = loop_thread.run(sup.socket_for(spec))
    assert get_unix(sock)[1] == "v000"
    # A start answers from its first worker; one still importing would write its own cache
    # entry for the edit below, and the trap would not be set.
    every_worker_ready(lambda: sup.status()[0], spec.workers)
    for n in range(1, ROUNDS + 1):
        old, new = f"v{n - 1:03d}", f"v{n:03d}"
        same_second_same_size_edit(source, old, new)
        assert plain_python_imports(source) == old  # the trap is set: the old cache would win
        outcome = loop_thread.run(sup.reload(spec))
        assert outcome.result == Result.RELOADED, outcome
        assert get_unix(sock)[1] == new, f"round {n}: stale code after the reload"


def test_a_cold_start_runs_an_edit_that_keeps_the_size_within_the_same_second(
    supervisor_factory, home_root, loop_thread
):
    sup = supervisor_factory()
    spec, source = module_app(home_root, "cold-second.apps.test")
    set_version(source, "c000", time.time())
    assert get_unix(loop_thread.run(sup.socket_for(spec)))[1] == "c000"
    for n in range(1, ROUNDS + 1):
        old, new = f"c{n - 1:03d}", f"c{n:03d}"
        loop_thread.run(sup.stop(spec.name, "a cold start follows"))
        same_second_same_size_edit(source, old, new)
        assert plain_python_imports(source) == old
        sock = loop_thread.run(sup.socket_for(spec))
        assert get_unix(sock)[1] == new, f"round {n}: stale code after a cold start"


def test_the_cache_it_leaves_is_checked_by_hash_and_reused_while_the_code_is_unchanged(
    supervisor_factory, home_root, loop_thread
):
    sup = supervisor_factory()
    spec, source = module_app(home_root, "reuse.apps.test")
    set_version(source, "same", time.time())
    sock = loop_thread.run(sup.socket_for(spec))
    cached = next((source / "__pycache__").glob("appversion.*.pyc"))
    assert int.from_bytes(cached.read_bytes()[4:8], "little") == 0b11  # checked-hash (PEP 552)
    written = cached.stat().st_mtime_ns
    assert loop_thread.run(sup.reload(spec)).ok
    assert get_unix(sock)[1] == "same"
    assert cached.stat().st_mtime_ns == written  # unchanged source: the entry is not rewritten
    assert plain_python_imports(source) == "same"  # and the ordinary import system accepts it


def test_every_response_names_its_generation_and_a_reload_names_the_new_one(
    supervisor_factory, home_root, loop_thread
):
    sup = supervisor_factory()
    spec, source = module_app(home_root, "gen.apps.test")
    set_version(source, "g1", time.time())
    sock = loop_thread.run(sup.socket_for(spec))
    status, headers, _ = get_unix_response(sock)
    assert (status, headers[GENERATION_HEADER]) == (200, "1")
    outcome = loop_thread.run(sup.reload(spec))
    assert (outcome.result, outcome.generation, outcome.workers) == (Result.RELOADED, 2, 2)
    assert isinstance(outcome.duration_ms, int)
    assert get_unix_response(sock)[1][GENERATION_HEADER] == "2"
    assert sup.status()[0]["generation"] == 2


def test_an_app_cannot_claim_another_generation(supervisor_factory, home_root, loop_thread):
    sup = supervisor_factory()
    source = write_app(
        home_root,
        "alice",
        "liar.apps.test",
        """
        def application(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain"), ("X-App-Generation", "99")])
            return [b"hi"]
    """,
    )
    spec = AppSpec(name="liar.apps.test", source_directory=str(source), owner="alice")
    conn = UnixHTTPConnection(loop_thread.run(sup.socket_for(spec)))
    try:
        conn.request("GET", "/", headers={"Host": "liar.apps.test"})
        headers = conn.getresponse().getheaders()
    finally:
        conn.close()
    assert [v for k, v in headers if k.lower() == GENERATION_HEADER.lower()] == ["1"]


def test_a_reload_of_an_app_not_running_here_reports_no_duration(
    supervisor_factory, home_root, loop_thread
):
    sup = supervisor_factory()
    spec, _ = module_app(home_root, "absent.apps.test")
    outcome = loop_thread.run(sup.reload(spec))
    assert (outcome.result, outcome.duration_ms, outcome.generation) == (
        Result.NOT_RUNNING,
        None,
        None,
    )
    assert outcome.ok
