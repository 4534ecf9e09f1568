"""``manage.py create_token <username> [--expires-days N] [--name NAME]``: print a new API token."""

from django.core.management.base import BaseCommand, CommandError

from panel.accounts import actions
from panel.accounts.models import User, Via
from panel.accounts.origin import Origin


class Command(BaseCommand):
    help = "Create an API token for a user and print it (it is stored only as a hash)."

    def add_arguments(self, parser):
        parser.add_argument("username", help="the user the token acts as (any case)")
        parser.add_argument(
            "--expires-days",
            type=int,
            default=None,
            help=f"expire after N days (default: {actions.DEFAULT_TOKEN_DAYS})",
        )
        parser.add_argument(
            "--reload-only",
            action="store_true",
            help="the token may only reload the user's web apps (403 on anything else)",
        )
        parser.add_argument("--name", default="created by manage.py", help="a label for the token")

    def handle(
        self,
        *args,
        username: str,
        expires_days: int | None,
        name: str,
        reload_only: bool = False,
        **options,
    ):
        user = User.objects.filter(username__iexact=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        try:
            _, key = actions.do_create_token(
                user,
                actor=user,
                origin=Origin(via=Via.CLI),
                name=name,
                expires_in_days=expires_days,
                scope="reload" if reload_only else "full",
            )
        except actions.ActionError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(key)
