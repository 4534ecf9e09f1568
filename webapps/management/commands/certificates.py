"""``manage.py certificates``: HTTPS per domain from the command line.

    manage.py certificates list                    every app certificate, its type, expiry, state
    manage.py certificates auto DOMAIN... | --all [--queue]
                                                   ask for automatic certificates; order now
                                                   (or leave it to the Celery worker)
    manage.py certificates renew [--force]         order every due certificate now (--force: all)
    manage.py certificates publish                 publish the bundle and the challenge document

The switch that gives every *new* app an automatic certificate is the setting
``TLS_AUTO_FOR_NEW_APPS``; ``auto --all`` does it for the apps that exist.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from panel.accounts.actions import ActionError
from routing import InvalidHost, canonical_host
from routing.certs import CERTS, CHALLENGES
from webapps import tls
from webapps.models import Certificate, WebApp


class Command(BaseCommand):
    help = "List, order, renew and publish app certificates (HTTPS per domain)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="verb", required=True)
        sub.add_parser("list", help="every app certificate")
        auto = sub.add_parser("auto", help="ask for automatic certificates and order them now")
        auto.add_argument("domains", nargs="*", help="app domains (any spelling)")
        auto.add_argument("--all", action="store_true", help="every app without an automatic one")
        auto.add_argument(
            "--queue", action="store_true", help="leave the orders to the Celery worker"
        )
        renew = sub.add_parser("renew", help="order every due certificate now")
        renew.add_argument("--force", action="store_true", help="every automatic certificate")
        sub.add_parser("publish", help="publish the certificate bundle and challenge document")

    def handle(self, *args, verb: str, **options):
        return getattr(self, f"do_{verb}")(**options) or ""

    def do_list(self, **options):
        rows = Certificate.objects.select_related("webapp").order_by("webapp__domain")
        for row in rows:
            self.stdout.write(f"{row.webapp.domain}\t{row.cert_type}\t{row.status_text()}")

    def do_auto(self, domains, all, queue, **options):
        if all:
            apps = list(WebApp.objects.exclude(certificate__cert_type=Certificate.Type.AUTO))
        else:
            try:
                wanted = [canonical_host(d) for d in domains]
            except InvalidHost as exc:
                raise CommandError(str(exc)) from None
            apps = list(WebApp.objects.filter(domain__in=wanted))
            missing = sorted(set(wanted) - {a.domain for a in apps})
            if missing:
                raise CommandError(f"no web app for {', '.join(missing)}")
        for webapp in apps:
            try:
                row = tls.do_request_auto_certificate(webapp, actor=None, origin=tls.SYSTEM)
            except ActionError as exc:
                raise CommandError(f"{webapp.domain}: {exc.message}") from None
            self.stdout.write(f"{webapp.domain}: automatic certificate asked for (#{row.pk})")
        if not queue:
            self.stdout.write(f"ordered: {tls.renew_due()}")

    def do_renew(self, force, **options):
        self.stdout.write(f"{tls.renew_due(force=force)}")

    def do_publish(self, **options):
        for kind in (CERTS, CHALLENGES):
            version = tls.publish(kind)
            said = f"version {version}" if version else "unchanged"
            self.stdout.write(f"{kind.name}: {said}")
