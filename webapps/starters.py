"""Project templates for "Add a web app": plain WSGI, Flask and Django (decision 0088).

``starter(template, ...)`` is pure: it says which files, links and directories make the project
(paths from the owner's home), its WSGI entry, its virtualenv and its static files mappings.
``webapps.actions.do_create_webapp`` writes them with ``webapps.homes.write_home_entries`` (as
the owner, never through a symlink) in the same transaction as the app.

Flask and Django come from the platform, not from PyPI: the template's virtualenv is written as
files (``pyvenv.cfg``, ``bin/python`` linked to the node's interpreter of that version, an empty
site-packages) and its site-packages holds one ``.pth`` line naming the platform's read-only
package set (``PLATFORM_PACKAGES``, copied by every node into ``PLATFORM_PACKAGES_DIR``). The
virtualenv is the owner's: whatever they ``pip install`` into it comes first.
"""

from __future__ import annotations

import importlib.metadata
import secrets
import textwrap
from dataclasses import dataclass
from pathlib import Path

from webapps.homes import STARTER_WSGI, HomeEntry

TEMPLATES = ("wsgi", "flask", "django")
# The distribution each template needs from the platform's package set.
NEEDS = {"flask": "Flask", "django": "Django"}
PLATFORM_PTH = "_hosting_platform.pth"
VIRTUALENVS = ".virtualenvs"


class StarterError(ValueError):
    """A template that cannot be made here; the message says why."""


@dataclass(frozen=True)
class Starter:
    entries: tuple[HomeEntry, ...]
    wsgi_entry: str
    virtualenv: tuple[str, ...] = ()  # its path from the home, () for none
    static: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (url prefix, directory from the home)


def check_template(raw: object) -> str:
    if raw not in TEMPLATES:
        raise StarterError(f"template {raw!r} is not one of {', '.join(TEMPLATES)}")
    return str(raw)


def starter(
    template: str,
    *,
    domain: str,
    source: tuple[str, ...],
    interpreter: str,
    python_version: str,
    platform_site: Path | None,
) -> Starter:
    """The project of ``template`` in ``~/<source...>``, for ``domain``.

    ``interpreter``/``python_version``: the node's Python its virtualenv links to;
    ``platform_site``: the platform's package set (``pythons.platform_site``).
    """
    template = check_template(template)
    if template == "wsgi":
        return Starter((HomeEntry((*source, "wsgi.py"), STARTER_WSGI),), "wsgi:application")
    needed = NEEDS[template]
    try:
        importlib.metadata.distribution(needed)
    except importlib.metadata.PackageNotFoundError:
        platform_site = None
    if platform_site is None:
        raise StarterError(
            f"the {template} template needs {needed} from the platform's packages, and it is "
            "not installed with the panel (PLATFORM_PACKAGES)"
        )
    venv = (VIRTUALENVS, domain)
    entries = [*_virtualenv(venv, interpreter, python_version, platform_site)]
    if template == "flask":
        entries += [
            HomeEntry((*source, "flask_app.py"), FLASK_APP),
            HomeEntry((*source, "wsgi.py"), FLASK_WSGI),
        ]
        return Starter(tuple(entries), "wsgi:application", venv)
    files = django_project(domain)
    entries += [HomeEntry((*source, *name.split("/")), text) for name, text in files.items()]
    static = (*source, "static")
    entries.append(HomeEntry(static, directory=True))
    return Starter(tuple(entries), "mysite.wsgi:application", venv, (("/static/", static),))


def _virtualenv(
    venv: tuple[str, ...], interpreter: str, version: str, platform_site: Path
) -> list[HomeEntry]:
    """A virtualenv as ``python -m venv --without-pip`` leaves it, plus the platform's ``.pth``."""
    base = str(Path(interpreter).parent)
    cfg = (
        f"home = {base}\ninclude-system-site-packages = false\nversion = {version}\n"
        f"executable = {interpreter}\n"
    )
    site = (*venv, "lib", f"python{version}", "site-packages")
    return [
        HomeEntry((*venv, "pyvenv.cfg"), cfg),
        HomeEntry((*venv, "bin", "python"), link_to=interpreter),
        HomeEntry((*venv, "bin", "python3"), link_to="python"),
        HomeEntry((*venv, "bin", f"python{version}"), link_to="python"),
        HomeEntry((*site, PLATFORM_PTH), f"{platform_site}\n"),
    ]


FLASK_APP = '''\
"""A Flask app made by the hosting panel: edit it, then press Reload."""

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello():
    return "Hello from Flask! Edit flask_app.py, then press Reload.\\n"
'''

FLASK_WSGI = '''\
"""The WSGI entry the node runs (wsgi:application)."""

from flask_app import app as application  # noqa: F401
'''


def django_project(domain: str) -> dict[str, str]:
    """The files of a Django project ``mysite`` for ``domain`` (paths from the source directory):
    STATIC_ROOT is ``static/`` beside ``manage.py``, mapped to ``/static/`` by the panel."""
    settings = f'''\
        """Settings of a Django project made by the hosting panel."""

        from pathlib import Path

        BASE_DIR = Path(__file__).resolve().parent.parent
        SECRET_KEY = {secrets.token_urlsafe(50)!r}
        DEBUG = False
        ALLOWED_HOSTS = [{domain!r}]

        INSTALLED_APPS = [
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.staticfiles",
        ]
        MIDDLEWARE = [
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ]
        ROOT_URLCONF = "mysite.urls"
        TEMPLATES = [
            {{
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [],
                "APP_DIRS": True,
                "OPTIONS": {{
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ],
                }},
            }},
        ]
        WSGI_APPLICATION = "mysite.wsgi.application"
        DATABASES = {{
            "default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
        }}
        USE_TZ = True
        DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
        # Served by the platform from the /static/ mapping: run `python manage.py collectstatic`
        # after adding static files (the admin's included), then reload.
        STATIC_URL = "/static/"
        STATIC_ROOT = BASE_DIR / "static"
    '''
    urls = """\
        from django.contrib import admin
        from django.http import HttpResponse
        from django.urls import path


        def home(request):
            return HttpResponse("Hello from Django! Edit mysite/urls.py, then press Reload.\\n")


        urlpatterns = [
            path("admin/", admin.site.urls),
            path("", home),
        ]
    """
    wsgi = """\
        import os

        from django.core.wsgi import get_wsgi_application

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
        application = get_wsgi_application()
    """
    manage = """\
        #!/usr/bin/env python
        import os
        import sys

        if __name__ == "__main__":
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
            from django.core.management import execute_from_command_line

            execute_from_command_line(sys.argv)
    """
    return {
        "manage.py": textwrap.dedent(manage),
        "mysite/__init__.py": "",
        "mysite/settings.py": textwrap.dedent(settings),
        "mysite/urls.py": textwrap.dedent(urls),
        "mysite/wsgi.py": textwrap.dedent(wsgi),
    }
