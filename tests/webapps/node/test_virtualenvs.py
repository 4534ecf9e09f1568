"""Virtualenvs made the ordinary way, and ``python_version``, through the node's supervisor.

Each virtualenv is real (``python -m venv --without-pip``); a package is "installed" into it by
writing it into its site-packages, as pip would. None has gunicorn unless a test puts one there:
the node supplies the server (``webapps.node.pythons.server_packages``).
"""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import sys
from pathlib import Path

import gunicorn
import pytest

from tests.webapps.node import harness
from tests.webapps.node.support import add_apps, get_unix, manage, write_app
from webapps.node import pythons
from webapps.node.control import call
from webapps.node.outcome import Result
from webapps.node.spec import AppSpec, SourceRefused, check_virtualenv
from webapps.node.supervisor import AppUnavailable

OWN = pythons.own_version()
REPORT_APP = """
    import json, sys
    def application(environ, start_response):
        import gunicorn
        try:
            import greeting
            word = greeting.WORD
        except ImportError:
            word = None
        try:
            import django
            django_from = django.__file__
        except ImportError:
            django_from = None
        body = json.dumps({
            "prefix": sys.prefix,
            "version": "%d.%d" % sys.version_info[:2],
            "gunicorn": gunicorn.__file__,
            "greeting": word,
            "django": django_from,
        }).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
"""


def make_venv(path: Path, python: str = sys.executable) -> Path:
    subprocess.run([python, "-m", "venv", "--without-pip", str(path)], check=True, timeout=60)
    return path


def site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python3.*/site-packages"))


def install_greeting(venv: Path, word: str) -> None:
    package = site_packages(venv) / "greeting"
    package.mkdir()
    (package / "__init__.py").write_text(f"WORD = {word!r}\n")


def other_python() -> tuple[str, str]:
    """A Python of another minor version than the node's (version, interpreter), or skip."""
    candidates = [
        *(shutil.which(f"python3.{minor}") for minor in pythons.DISCOVER_MINORS),
        *glob.glob("/root/.pyenv/versions/3.*/bin/python3.*[0-9]"),
        *glob.glob("/usr/local/bin/python3.*[0-9]"),
    ]
    for candidate in candidates:
        probed = candidate and pythons.probe(candidate)
        if probed and probed[0] != OWN and int(probed[0].split(".")[1]) >= 10:
            return probed
    pytest.skip(f"needs a Python >= 3.10 other than {OWN} (python3.N on PATH or under pyenv)")


def spec_for(source: Path, **kw) -> AppSpec:
    return AppSpec(name=source.name, source_directory=str(source), owner="alice", **kw)


def report(loop_thread, sup, spec) -> dict:
    sock = loop_thread.run(sup.socket_for(spec))
    status, body = get_unix(sock)
    assert status == 200, body
    return json.loads(body)


def test_a_virtualenv_without_gunicorn_serves_with_the_nodes_and_only_its_own_packages(
    supervisor_factory, home_root, loop_thread
):
    venv = make_venv(home_root / "alice" / ".virtualenvs" / "site")
    install_greeting(venv, "hello from the venv")
    assert not list(site_packages(venv).glob("gunicorn*"))
    sup = supervisor_factory()
    source = write_app(home_root, "alice", "plain-venv.apps.test", REPORT_APP)
    seen = report(loop_thread, sup, spec_for(source, virtualenv_path=str(venv)))
    assert seen["prefix"] == str(venv)
    assert seen["greeting"] == "hello from the venv"
    # gunicorn is the node's copy, and nothing else of the node's environment comes with it
    assert Path(seen["gunicorn"]).is_relative_to(sup.server_path)
    assert seen["django"] is None
    assert sorted(p.name for p in sup.server_path.iterdir() if p.name != "__pycache__") == [
        "gunicorn",
        f"gunicorn-{gunicorn.__version__}.dist-info",
    ]


def test_the_virtualenvs_own_gunicorn_comes_before_the_nodes(
    supervisor_factory, home_root, loop_thread
):
    venv = make_venv(home_root / "alice" / ".virtualenvs" / "own-server")
    # As `pip install gunicorn` would leave it, marked so that we can tell the copies apart.
    installed = site_packages(venv) / "gunicorn"
    shutil.copytree(
        Path(gunicorn.__file__).parent, installed, ignore=shutil.ignore_patterns("*.pyc")
    )
    with (installed / "__init__.py").open("a") as stream:
        stream.write("\nFROM_THE_VENV = True\n")
    sup = supervisor_factory()
    source = write_app(
        home_root,
        "alice",
        "own-server.apps.test",
        """
        def application(environ, start_response):
            import gunicorn
            body = ("%s %s" % (getattr(gunicorn, "FROM_THE_VENV", False), gunicorn.__file__))
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [body.encode()]
        """,
    )
    sock = loop_thread.run(sup.socket_for(spec_for(source, virtualenv_path=str(venv))))
    marked, path = get_unix(sock)[1].split(" ", 1)
    assert (marked, path) == ("True", str(installed / "__init__.py"))


def test_a_virtualenv_of_another_python_fails_the_reload_with_the_reason_and_no_crash_loop(
    supervisor_factory, home_root, loop_thread
):
    other = "3.12" if OWN != "3.12" else "3.13"
    venv = make_venv(home_root / "alice" / ".virtualenvs" / "wrong")
    sup = supervisor_factory(pythons={OWN: sys.executable, other: sys.executable})
    source = write_app(home_root, "alice", "wrong-venv.apps.test", REPORT_APP)
    good = spec_for(source, virtualenv_path=str(venv), python_version=OWN)
    assert report(loop_thread, sup, good)["version"] == OWN
    # The owner switches the app to another Python but keeps the virtualenv, and reloads.
    wrong = spec_for(source, virtualenv_path=str(venv), python_version=other)
    outcome = loop_thread.run(sup.reload(wrong))
    assert outcome.result == Result.FAILED
    expected = f"was made with Python {OWN}, but the app asks for Python {other}"
    assert expected in outcome.message
    assert expected in outcome.log_tail
    # Requests get the reason at once; nothing is started again and again.
    for _ in range(3):
        with pytest.raises(AppUnavailable, match=f"asks for Python {other}"):
            loop_thread.run(sup.socket_for(wrong))
    (state,) = sup.status()
    assert state["pid"] is None and state["phase"] != "running"
    # A reload while nothing runs says the same, instead of "the next request starts it".
    again = loop_thread.run(sup.reload(wrong))
    assert again.result == Result.FAILED and expected in again.message


def test_a_virtualenv_whose_python_is_not_on_this_node_is_named(home_root):
    venv = make_venv(home_root / "alice" / "moved")
    # As a virtualenv copied from a machine with a Python this one lacks looks.
    (venv / "bin" / "python").unlink()
    (venv / "bin" / "python").symlink_to("/opt/python3.9/bin/python3.9")
    (venv / "pyvenv.cfg").write_text("home = /opt/python3.9/bin\nversion = 3.9.18\n")
    with pytest.raises(SourceRefused, match=r"made with Python 3\.9 from /opt/python3\.9/bin"):
        check_virtualenv(venv, "")


def test_python_version_runs_that_python_of_the_node(supervisor_factory, home_root, loop_thread):
    version, interpreter = other_python()
    sup = supervisor_factory(pythons={OWN: sys.executable, version: interpreter})
    source = write_app(home_root, "alice", "other-python.apps.test", REPORT_APP)
    seen = report(loop_thread, sup, spec_for(source, python_version=version))
    assert seen["version"] == version
    assert Path(seen["gunicorn"]).is_relative_to(sup.server_path)
    # and a virtualenv made with that Python, asked for by its version
    venv = make_venv(home_root / "alice" / ".virtualenvs" / "other", interpreter)
    install_greeting(venv, "other")
    source = write_app(home_root, "alice", "other-venv.apps.test", REPORT_APP)
    seen = report(
        loop_thread, sup, spec_for(source, virtualenv_path=str(venv), python_version=version)
    )
    assert (seen["version"], seen["greeting"], seen["prefix"]) == (version, "other", str(venv))


def test_a_python_version_the_node_does_not_have_fails_the_reload_listing_its_own(
    supervisor_factory, home_root, loop_thread
):
    sup = supervisor_factory()
    source = write_app(home_root, "alice", "no-python.apps.test", REPORT_APP)
    outcome = loop_thread.run(sup.reload(spec_for(source, python_version="3.99")))
    assert outcome.result == Result.FAILED
    assert f"Python 3.99 is not on this node; it has {OWN}" in outcome.message


def _set_python(env, domain: str, **fields: str) -> None:
    assignments = ", ".join(f"{k}={v!r}" for k, v in fields.items())
    manage(
        env,
        "shell",
        "-c",
        f"from webapps.models import WebApp; "
        f"WebApp.objects.filter(domain={domain!r}).update({assignments})",
    )


def test_an_isolated_node_serves_plain_virtualenvs_and_other_pythons_in_the_sandbox(platform):
    harness.need_isolation()
    version, interpreter = other_python()
    platform.env["NODE_PYTHONS"] = f"{OWN}={sys.executable},{version}={interpreter}"
    venv = make_venv(platform.home / "carol" / ".virtualenvs" / "site")
    install_greeting(venv, "sandboxed")
    sources = {
        "carol.example": write_app(platform.home, "carol", "carol.example", REPORT_APP),
        "carol-other.example": write_app(platform.home, "carol", "carol-other.example", REPORT_APP),
    }
    add_apps(platform.env, {"carol": [(d, str(s)) for d, s in sources.items()]})  # chowns home
    _set_python(platform.env, "carol.example", virtualenv_path=str(venv), python_version=OWN)
    _set_python(platform.env, "carol-other.example", python_version=version)
    node = platform.node("b1", "--no-routes", "--no-egress")
    assert (
        f"pythons: {OWN} ({sys.executable}), {version} ({interpreter})" in node.output.read_text()
    )
    code, _, body = node.request("carol.example")
    assert code == 200, body
    seen = json.loads(body)
    assert (seen["prefix"], seen["greeting"], seen["django"]) == (str(venv), "sandboxed", None)
    assert seen["gunicorn"].startswith(str(node.run_dir / "server") + "/")
    code, _, body = node.request("carol-other.example")
    assert code == 200, body
    assert json.loads(body)["version"] == version


def test_a_django_site_in_a_plain_virtualenv_deployed_through_the_api_serves_its_admin(platform):
    """`python -m venv`, `pip install django`, `startproject`: no gunicorn anywhere in it."""
    harness.need_isolation()
    home = platform.home / "dora"
    venv = make_venv(home / ".virtualenvs" / "mysite")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--quiet", "--disable-pip-version-check", f"Django=={django_version()}"],
        check=True, timeout=300,
    )  # fmt: skip
    assert not list(site_packages(venv).glob("gunicorn*"))
    source = home / "mysite"
    source.mkdir()
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "django", "startproject", "mysite", str(source)],
        check=True,
        env=clean,
        timeout=60,
    )
    with (source / "mysite" / "settings.py").open("a") as settings:
        settings.write(
            '\nALLOWED_HOSTS = ["dora.example"]\nDEBUG = False\nSTATIC_ROOT = BASE_DIR / "static"\n'
        )
    for command in (["migrate", "-v0"], ["collectstatic", "--noinput", "-v0"]):
        subprocess.run(
            [python, "manage.py", *command], cwd=source, check=True, env=clean, timeout=120
        )
    tokens = add_apps(platform.env, {"dora": []})  # the home becomes dora's
    node = platform.node("b1", "--no-routes", "--no-egress")
    api = "/api/v0/user/dora/webapps/"
    headers = {"Authorization": f"Token {tokens['dora']}", "Content-Type": "application/json"}
    for path, body in [
        (api, {"domain_name": "dora.example", "source_directory": str(source),
               "virtualenv_path": str(venv), "wsgi_entry": "mysite.wsgi:application",
               "python_version": OWN}),
        (f"{api}dora.example/static_files/", {"url": "/static/", "path": str(source / "static")}),
    ]:  # fmt: skip
        code, _, text = node.request("panel.localhost", path, "POST", headers, json.dumps(body))
        assert code == 201, text
    answer = call(node.control_socket, {"op": "reload", "domain": "dora.example"}, 30)
    assert answer["status"] == "OK", answer
    code, _, page = node.request("dora.example", "/admin/login/")
    assert code == 200, page
    assert "/static/admin/css/base.css" in page
    code, headers, css = node.request("dora.example", "/static/admin/css/base.css")
    assert code == 200 and headers["Content-Type"].startswith("text/css")
    assert css == (source / "static" / "admin" / "css" / "base.css").read_text()


def django_version() -> str:
    import django

    return django.__version__


# --- the pure parts ----------------------------------------------------------------------------


def test_node_pythons_are_parsed_strictly():
    assert pythons.parse_pythons(" 3.11=/usr/bin/python3.11, 3.12=/opt/p/python3.12 ,") == {
        "3.11": "/usr/bin/python3.11",
        "3.12": "/opt/p/python3.12",
    }
    assert pythons.parse_pythons("") == {}
    for raw, problem in [
        ("3.11", "is not <version>=<interpreter>"),
        ("three=/usr/bin/python3", "is not <version>=<interpreter>"),
        ("3.11=python3.11", "is not an absolute path"),
        ("3.11=/a,3.11=/b", "Python 3.11 is given twice"),
    ]:
        with pytest.raises(ValueError, match=problem):
            pythons.parse_pythons(raw)


def test_a_configured_interpreter_must_be_the_version_it_is_given_as():
    wrong = "3.12" if OWN != "3.12" else "3.13"
    with pytest.raises(ValueError, match=f"is Python {OWN}, not {wrong}"):
        pythons.pythons_for(f"{wrong}={sys.executable}")
    with pytest.raises(ValueError, match="does not run"):
        pythons.pythons_for("3.12=/nonexistent/python3.12")


def test_discovery_finds_python3_n_on_the_path_as_its_real_interpreter(tmp_path):
    version, interpreter = other_python()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / f"python{version}").symlink_to(interpreter)
    (bin_dir / "python3.42").symlink_to("/bin/false")  # does not run: left out
    found = pythons.discover(str(bin_dir))
    assert found == {OWN: sys.executable, version: str(Path(interpreter).resolve())}
    assert list(found) == sorted(found, key=lambda v: int(v.split(".")[1]))


@pytest.mark.parametrize(
    ("cfg", "version"),
    [
        ("home = /usr/bin\nversion = 3.12.1\n", "3.12"),
        ("home = /usr/bin\nversion_info = 3.10.13.final.0\nversion = 20.25.0\n", "3.10"),
        ("home = /usr/bin\nversion_info = 3.13.0\n", "3.13"),
    ],
)
def test_a_virtualenv_says_which_python_made_it(tmp_path, cfg, version):
    (tmp_path / "pyvenv.cfg").write_text(cfg)
    assert pythons.venv_version(tmp_path) == version


def test_a_virtualenv_without_a_version_line_is_known_by_its_lib_directory(tmp_path):
    (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (tmp_path / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    assert pythons.venv_version(tmp_path) == "3.11"
