"""``manage.py seed_demo b1=127.0.0.1:9001 ...``: the demo's data, created once and reused.

Creates (only what is missing): an admin, the users IronHand, JoeButy and fred with one small
app each under HOME_ROOT, and the backends named on the command line — the first two active,
the rest disabled as spares. Passwords are generated once into ``VAR_DIR/demo-credentials.json``
(mode 0600) and printed on every run. It lives in the pool app because that is the one app
that may import all three (accounts, web apps, the pool).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from panel.accounts.actions import ActionError
from panel.accounts.models import User, Via
from panel.accounts.origin import Origin
from routing.pool.actions import do_add_backend
from routing.pool.models import Backend
from webapps.actions import do_create_webapp
from webapps.domains import username_label
from webapps.models import WebApp

DEMO_USERS = ("IronHand", "JoeButy", "fred")
ACTIVE_BACKENDS = 2

DEMO_APP = '''\
"""{username}'s demo app. Edit MESSAGE, then press Reload in the panel's Web tab."""

import os
import time

MESSAGE = "Hello from {username}'s app"
STARTED = time.strftime("%H:%M:%S")


def application(environ, start_response):
    body = (
        f"{{MESSAGE}}\\n"
        f"host: {{environ.get('HTTP_HOST')}}\\n"
        f"worker pid {{os.getpid()}}, code loaded at {{STARTED}}\\n"
    ).encode()
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def _parse_node(raw: str) -> tuple[str, str]:
    name, sep, address = raw.partition("=")
    if not sep or not name or not address:
        raise CommandError(f"{raw!r} is not NAME=HOST:PORT (e.g. b1=127.0.0.1:9001)")
    return name, address


class Command(BaseCommand):
    help = "Create the demo's admin, users, apps and backends if missing; print the credentials."

    def add_arguments(self, parser):
        parser.add_argument("nodes", nargs="*", help="backends as NAME=HOST:PORT, in order")
        parser.add_argument(
            "--proxy-port", type=int, default=80, help="port the apps' URLs are printed with"
        )

    def handle(self, *args, nodes: list[str], proxy_port: int, **options):
        backends = [_parse_node(raw) for raw in nodes]  # all checked before anything is written
        credentials = self._credentials(Path(settings.VAR_DIR) / "demo-credentials.json")
        origin = Origin(via=Via.CLI)
        with transaction.atomic():
            admin = self._user("admin", credentials["admin"], staff=True)
            users = [self._user(name, credentials[name]) for name in DEMO_USERS]
        for user in users:
            self._app(user, origin)
        for index, (name, address) in enumerate(backends):
            if Backend.objects.filter(name=name).exists():
                continue
            state = Backend.State.ACTIVE if index < ACTIVE_BACKENDS else Backend.State.DISABLED
            try:
                do_add_backend(
                    name, address, actor=admin, origin=origin, state=state, notes="demo node"
                )
            except ActionError as exc:
                raise CommandError(f"backend {name}: {exc}") from None
        self._print(credentials, users, proxy_port)

    def _credentials(self, path: Path) -> dict[str, str]:
        stored = json.loads(path.read_text()) if path.exists() else {}
        wanted = ("admin", *DEMO_USERS)
        if any(name not in stored for name in wanted):
            stored = {name: stored.get(name) or secrets.token_urlsafe(12) for name in wanted}
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(stored, indent=2))
            path.chmod(0o600)
        return stored

    def _user(self, username: str, password: str, staff: bool = False) -> User:
        user = User.objects.filter(username__iexact=username).first()
        if user is None:
            user = User(username=username, is_staff=staff, is_superuser=staff)
            user.set_password(password)
            user.save()
        return user

    def _app(self, user: User, origin: Origin) -> None:
        if WebApp.objects.filter(owner=user).exists():
            return
        try:
            domain = f"{username_label(user.username)}.{settings.APPS_DOMAIN}"
            webapp = do_create_webapp(domain, actor=user, origin=origin)
        except ActionError as exc:
            raise CommandError(f"app for {user.username}: {exc}") from None
        Path(webapp.source_directory, "wsgi.py").write_text(DEMO_APP.format(username=user.username))

    def _print(self, credentials: dict[str, str], users: list[User], proxy_port: int) -> None:
        port = "" if proxy_port == 80 else f":{proxy_port}"
        self.stdout.write("Sign in (username / password):")
        for name in ("admin", *DEMO_USERS):
            self.stdout.write(f"  {name:<10} {credentials[name]}")
        self.stdout.write("Apps:")
        for webapp in WebApp.objects.filter(owner__in=users).select_related("owner"):
            self.stdout.write(
                f"  {webapp.owner.username:<10} http://{webapp.domain}{port}/  "
                f"(code: {webapp.source_directory}/wsgi.py)"
            )
