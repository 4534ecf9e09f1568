"""``manage.py createuser <username> [--email E] [--staff]``: an ordinary panel user.

The password is read from stdin when it is not a terminal (``--password-stdin`` style, for
scripts), otherwise prompted for twice. Usernames are unique regardless of case.
"""

import getpass
import sys

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from panel.accounts.models import User


class Command(BaseCommand):
    help = "Create a user of the panel (password from stdin or a prompt)."

    def add_arguments(self, parser):
        parser.add_argument("username", help="unique regardless of case")
        parser.add_argument("--email", default="", help="the user's e-mail address (optional)")
        parser.add_argument("--staff", action="store_true", help="may use the admin and staff API")

    def handle(self, *args, username: str, email: str, staff: bool, **options):
        if User.objects.filter(username__iexact=username).exists():
            raise CommandError(f"a user named {username!r} already exists (names ignore case)")
        if sys.stdin.isatty():
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("the passwords do not match")
        else:
            password = sys.stdin.readline().rstrip("\n")
        user = User(username=username, email=email, is_staff=staff)
        try:
            User._meta.get_field("username").run_validators(username)
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        user.set_password(password)
        user.save()
        self.stdout.write(f"created {user.username}")
