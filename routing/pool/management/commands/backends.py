"""``manage.py backends list|add|remove|drain|activate|disable|set-weight``: the backend pool.

Every change goes through ``routing.pool.actions`` (one transaction, a revision, a publish after
commit) and prints how many apps move where. ``--dry-run`` prints the same without changing
anything. Refused input exits with status 1 and a message on stderr; nothing is changed.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from panel.accounts.models import Via
from panel.accounts.origin import Origin
from routing.pool import actions, tables
from routing.pool.models import Backend
from routing.table import STATES

CLI = Origin(via=Via.CLI)


def print_change(out, change: actions.Change, list_moves: bool, dry_run: bool) -> None:
    if not change.changed:
        out.write(f"{change.backend}: no change")
        return
    head = "would apply" if dry_run else f"version {change.version}"
    out.write(f"{head}: {change.summary}")
    out.write(f"  {change.plan.summary()}")
    if list_moves:
        for move in change.plan.moves:
            out.write(f"  {move.key}: {move.source or '(none)'} -> {move.target or '(none)'}")


class Command(BaseCommand):
    help = "List and change the backend pool (each change is published to the proxies)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

        sub.add_parser("list", help="the pool with weight, state and number of apps served")

        def change_parser(verb: str, help_text: str, force: bool = False) -> CommandParser:
            p = sub.add_parser(verb, help=help_text)
            p.add_argument("name", help="backend name, e.g. b3")
            p.add_argument("--dry-run", action="store_true", help="show the effect, change nothing")
            p.add_argument("--list-moves", action="store_true", help="name every app that moves")
            if force:
                p.add_argument(
                    "--force",
                    action="store_true",
                    help="allow leaving the pool without an active backend",
                )
            return p

        add = change_parser("add", "add a backend")
        add.add_argument("address", help="host:port the proxies connect to")
        add.add_argument("--weight", type=int, default=1, help="relative share (default 1)")
        add.add_argument(
            "--state", choices=STATES, default="active", help="initial state (default active)"
        )
        add.add_argument("--notes", default="", help="free text for operators")
        change_parser("remove", "remove a backend (its apps move to the others)", force=True)
        change_parser("drain", "stop routing apps to a backend, keep it listed", force=True)
        change_parser("activate", "route apps to a backend again")
        change_parser("disable", "take a backend out of routing", force=True)
        weight = change_parser("set-weight", "change a backend's relative share")
        weight.add_argument("weight", type=int, help="new relative share, 1 to 1,000,000")

    def handle(self, *args, verb: str, **options) -> None:
        if verb == "list":
            self.list_backends()
            return
        action, spec, commit = self.plan(verb, options)
        force = options.get("force", False)
        try:
            change = actions.preview(action, spec, force) if options["dry_run"] else commit()
        except actions.ActionError as exc:
            raise CommandError(exc.message) from None
        print_change(self.stdout, change, options["list_moves"], options["dry_run"])

    def plan(self, verb: str, o: dict):
        name = o["name"]
        force = o.get("force", False)
        if verb == "add":
            fields = {"weight": o["weight"], "state": o["state"], "notes": o["notes"]}
            spec = {"name": name, "address": o["address"], **fields}
            return (
                "backend.add",
                spec,
                lambda: actions.do_add_backend(
                    name, o["address"], actor=None, origin=CLI, **fields
                ),
            )
        if verb == "remove":
            return (
                "backend.remove",
                {"name": name},
                lambda: actions.do_remove_backend(name, actor=None, origin=CLI, force=force),
            )
        if verb == "set-weight":
            return (
                "backend.set_weight",
                {"name": name, "weight": o["weight"]},
                lambda: actions.do_set_weight(name, o["weight"], actor=None, origin=CLI),
            )
        state = {"drain": "draining", "activate": "active", "disable": "disabled"}[verb]
        do = {
            "drain": lambda: actions.do_drain(name, actor=None, origin=CLI, force=force),
            "activate": lambda: actions.do_activate(name, actor=None, origin=CLI),
            "disable": lambda: actions.do_disable(name, actor=None, origin=CLI, force=force),
        }[verb]
        return f"backend.{verb}", {"name": name, "state": state}, do

    def list_backends(self) -> None:
        rows = list(Backend.objects.order_by("name"))
        if not rows:
            self.stdout.write("no backends (add one: manage.py backends add NAME HOST:PORT)")
            return
        counts = tables.apps_per_backend()
        width = max(4, *(len(r.name) for r in rows))
        addr_width = max(7, *(len(r.address) for r in rows))
        self.stdout.write(
            f"{'NAME':<{width}}  {'ADDRESS':<{addr_width}}  WEIGHT  {'STATE':<8}  APPS"
        )
        for r in rows:
            self.stdout.write(
                f"{r.name:<{width}}  {r.address:<{addr_width}}  {r.weight:>6}  {r.state:<8}  "
                f"{counts.get(r.name, 0):>4}"
            )
        if counts.get(None):
            self.stdout.write(f"{counts[None]} apps have no active backend")
