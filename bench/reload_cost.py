"""Benchmark: what hash-checked bytecode costs a real Django project's cold start and reload.

    .venv/bin/python bench/reload_cost.py [--rounds 7] [--reloads 5]

Makes a project with ``django-admin startproject`` in a home under a temporary directory, twice
(one copy per side, so neither reads the other's cache), and runs each through the node's
supervisor (2 sync gunicorn workers, as the node gives every app):

- ours: the node as it is: code outside the standard library and site-packages is imported with
  hash-checked bytecode (``webapps/node/gunicorn_conf.py``);
- peer: the old behaviour: the same gunicorn settings without that, so the ordinary
  mtime-and-size cache is trusted.

Per round and side, interleaved: a cold start (from the socket request until a request is
answered), ``--reloads`` reloads of unchanged code (until every new worker is ready), and one
reload after an edit of settings.py; then, in fresh interpreters without gunicorn, the import
of the project's WSGI app alone, in CPU time (the loader's own cost). Prints the medians.
Loopback only; bounded:
about rounds x 2 x (reloads + 2) gunicorn boots.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import LoopThread  # noqa: E402
from tests.webapps.node.support import get_unix  # noqa: E402
from webapps.node import spec as node_spec  # noqa: E402
from webapps.node.spec import AppSpec  # noqa: E402
from webapps.node.supervisor import Supervisor  # noqa: E402

OWNER = "bencher"


def make_project(home: Path, name: str) -> Path:
    source = home / OWNER / name
    source.mkdir(parents=True)
    django_admin = Path(sys.executable).with_name("django-admin")
    subprocess.run([str(django_admin), "startproject", "mysite", str(source)], check=True)
    return source


def peer_conf(directory: Path) -> Path:
    """gunicorn_conf.py as it was: no hash-checked imports in the workers."""
    text = node_spec.GUNICORN_CONF.read_text()
    marker = "    install_hash_checked_imports()\n"
    if marker not in text:
        raise SystemExit("gunicorn_conf.py changed: cannot derive the peer's settings")
    path = directory / "peer_gunicorn_conf.py"
    path.write_text(text.replace(marker, "    pass  # the ordinary bytecode cache\n"))
    return path


def ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def measure(loop, sup: Supervisor, spec: AppSpec, conf: Path, reloads: int) -> dict:
    node_spec.GUNICORN_CONF = conf  # gunicorn_argv reads it at every start
    loop.run(sup.stop(spec.name, "cold start"))
    started = time.perf_counter()
    sock = loop.run(sup.socket_for(spec))
    get_unix(sock, host="localhost")
    cold = ms(started)
    warm = []
    for _ in range(reloads):
        started = time.perf_counter()
        outcome = loop.run(sup.reload(spec))
        assert outcome.ok, outcome
        warm.append(ms(started))
    settings = Path(spec.source_directory) / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + f"\nBENCH_EDIT = {time.time_ns()}\n")
    started = time.perf_counter()
    assert loop.run(sup.reload(spec)).ok
    edited = ms(started)
    return {"cold": cold, "reload": statistics.median(warm), "edited": edited}


IMPORT_PROBE = """
import os, sys, time
sys.path.insert(0, os.getcwd())
os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
if sys.argv[1] == "ours":
    sys.path.insert(0, {conf_dir!r})
    import gunicorn_conf
    gunicorn_conf.install_hash_checked_imports()
started = time.process_time()
from mysite.wsgi import application
print((time.process_time() - started) * 1000)
"""


def import_time(source: Path, side: str, conf: Path) -> float:
    """CPU milliseconds to import the project's WSGI app (Django set up) in a fresh interpreter
    (CPU time: on a loaded machine wall time mostly measures the other processes)."""
    code = IMPORT_PROBE.format(conf_dir=str(conf.parent))
    out = subprocess.run(
        [sys.executable, "-c", code, side], cwd=source, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--reloads", type=int, default=5)
    parser.add_argument("--import-rounds", type=int, default=21)
    args = parser.parse_args()
    original_conf = node_spec.GUNICORN_CONF
    workdir = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))
    loop = LoopThread(timeout=120.0)
    try:
        home = workdir / "home"
        sides = {"ours": make_project(home, "ours"), "peer": make_project(home, "peer")}
        confs = {"ours": original_conf, "peer": peer_conf(workdir)}

        async def build() -> Supervisor:
            return Supervisor(
                run_dir=workdir / "run", log_dir=workdir / "log", home_root=home, idle_timeout=None
            )

        sup = loop.run(build())
        specs = {
            side: AppSpec(
                name=f"{side}.bench.test",
                source_directory=str(source),
                wsgi_entry="mysite.wsgi:application",
                owner=OWNER,
            )
            for side, source in sides.items()
        }
        for side in sides:  # the first start of each writes its cache; not measured
            node_spec.GUNICORN_CONF = confs[side]
            loop.run(sup.socket_for(specs[side]))
        results: dict[str, list[dict]] = {side: [] for side in sides}
        for _ in range(args.rounds):
            for side in sides:
                results[side].append(measure(loop, sup, specs[side], confs[side], args.reloads))
        loop.run(sup.stop_all())
        imports: dict[str, list[float]] = {side: [] for side in sides}
        for _ in range(args.import_rounds):
            for side, source in sides.items():
                imports[side].append(import_time(source, side, original_conf))
    finally:
        node_spec.GUNICORN_CONF = original_conf
        loop.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"Django {django_version()} startproject, 2 sync workers, medians of {args.rounds} rounds"
    )
    print(f"{'':28}{'ours':>10}{'peer (old)':>12}{'ours/peer':>11}")
    for key, label in (
        ("cold", "cold start to first answer"),
        ("reload", "reload, code unchanged"),
        ("edited", "reload after an edit"),
    ):
        ours = statistics.median(r[key] for r in results["ours"])
        peer = statistics.median(r[key] for r in results["peer"])
        print(f"{label:28}{ours:>8.0f}ms{peer:>10.0f}ms{ours / peer:>10.2f}x")
    ours, peer = (statistics.median(imports[side]) for side in ("ours", "peer"))
    label = f"import alone, CPU ({args.import_rounds}x)"
    print(f"{label:28}{ours:>8.1f}ms{peer:>10.1f}ms{ours / peer:>10.2f}x")


def django_version() -> str:
    import django

    return django.get_version()


if __name__ == "__main__":
    main()
