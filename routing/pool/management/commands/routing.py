"""``manage.py routing show|publish|where <domain>|status``: the route table and where apps go.

``show`` compares the committed table (database) with the one the proxies read (Redis), and
says whether the stored table's signature verifies with the trusted keys (proxies refuse one
that does not);
``publish`` publishes now from this process (the Celery task's code, without the queue);
``where`` names the backend of a domain and its fallback ranking; ``status`` shows the fleet
(every proxy and node, the version each holds, apps per backend: ``routing.pool.fleet``).
Exit status 1 with a message on stderr when Redis is unreachable, holds a newer table than the
database, or input is bad.
"""

from __future__ import annotations

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from panel.accounts.models import Via
from panel.accounts.origin import Origin
from routing.hosts import InvalidHost, canonical_host
from routing.pool import actions, tables, tasks
from routing.publish import read_stored, stored_version
from routing.signing import verified_table
from routing.table import RouteTable


class Command(BaseCommand):
    help = "Show, publish and query the route table."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
        show = sub.add_parser("show", help="the committed table and what Redis holds")
        show.add_argument("--json", action="store_true", help="print the committed table as JSON")
        publish = sub.add_parser("publish", help="publish the committed table to Redis now")
        publish.add_argument(
            "--bump",
            action="store_true",
            help="if Redis holds a newer version (e.g. after restoring the database), move the "
            "database's version past it and publish",
        )
        where = sub.add_parser("where", help="the backend (and fallback order) of a domain")
        where.add_argument("domain", help="the domain, in any spelling")
        status = sub.add_parser("status", help="every proxy and node and the version it holds")
        status.add_argument("--json", action="store_true", help="print it as JSON")
        status.add_argument("--version", type=int, help="follow this version (default: current)")

    def handle(self, *args, verb: str, **options) -> None:
        getattr(self, verb)(**options)

    def redis_table(self) -> tuple[RouteTable | None, str]:
        """The stored table if it verifies with the trusted keys, and a line saying so."""
        try:
            stored = read_stored(
                tasks.redis_client(), settings.REDIS_PREFIX, trusted_keys=tasks.trusted_keys()
            )
        except redis.RedisError as exc:
            return None, f"unreachable ({exc})"
        if stored.raw is None:
            return None, "no table"
        if stored.version is None:
            return None, f"refused, proxies do not take it ({stored.why})"
        table, signer = verified_table(stored.raw, stored.line, tasks.trusted_keys())
        return table, f"version {table.version}, signature verifies (key {signer})"

    def show(self, json: bool, **options) -> None:
        table = tables.committed_table()
        if json:
            self.stdout.write(table.to_json())
            return
        _, in_redis = self.redis_table()
        self.stdout.write(f"database: version {table.version} ({table.algorithm})")
        self.stdout.write(f"redis:    {in_redis}")
        counts = tables.apps_per_backend(table)
        for b in table.backends:
            self.stdout.write(
                f"  {b.name}  {b.address}  weight {b.weight}  {b.state}  "
                f"{counts.get(b.name, 0)} apps"
            )
        if not table.backends:
            self.stdout.write("  (no backends)")

    def publish(self, bump: bool, **options) -> None:
        try:
            held = stored_version(
                tasks.redis_client(), settings.REDIS_PREFIX, trusted_keys=tasks.trusted_keys()
            )
        except redis.RedisError as exc:
            raise CommandError(f"cannot reach Redis: {exc}") from None
        table = tables.committed_table()
        if held is not None and held > table.version:
            if not bump:
                raise CommandError(
                    f"Redis holds version {held}, newer than the database's {table.version}; "
                    "proxies keep that table. Run `routing publish --bump` to publish the "
                    "database's pool under a version past it."
                )
            version = actions.do_bump_version(held, actor=None, origin=Origin(via=Via.CLI))
            self.stdout.write(f"database version moved to {version}")
        try:
            published = tasks.publish_routes.run()
        except redis.RedisError as exc:
            raise CommandError(f"cannot reach Redis: {exc}") from None
        if published is None:
            current = tables.committed_table().version
            if current == 0:
                self.stdout.write("nothing to publish: no pool change committed yet")
            else:
                self.stdout.write(f"Redis already holds version {current}")
        else:
            self.stdout.write(f"published version {published}")

    def where(self, domain: str, **options) -> None:
        try:
            key = canonical_host(domain)
        except InvalidHost as exc:
            raise CommandError(str(exc)) from None
        table = tables.committed_table()
        backend = table.backend_for(key)
        if backend is None:
            raise CommandError(f"{key}: no active backend in version {table.version}")
        ranking = " > ".join(b.name for b in table.ranking(key))
        self.stdout.write(f"{key}: {backend.name} ({backend.address})")
        self.stdout.write(f"  ranking: {ranking}  (version {table.version})")
        published, _ = self.redis_table()
        if published is not None and published.version != table.version:
            served = published.backend_for(key)
            self.stdout.write(
                f"  proxies hold version {published.version}: "
                f"{served.name if served else 'no backend'}"
            )

    def status(self, json: bool, version: int | None, **options) -> None:
        import json as json_module

        from routing.pool.fleet import fleet_status

        status = fleet_status(version)
        if json:
            self.stdout.write(json_module.dumps(status.to_dict(), indent=1))
            return
        for line in status.lines():
            self.stdout.write(line)
