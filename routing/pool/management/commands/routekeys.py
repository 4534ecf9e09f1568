"""``manage.py routekeys new DIR | show [--id] [--key FILE]``: the route-table signing keys.

The same command as ``python -m routing.keys`` (``routing.keys.main``), with the panel's
``VAR_DIR`` as the default place of the machine's pair, so ``manage.py routekeys show`` prints
the public key every publisher and reader on this machine uses.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from routing import keys


def with_var_dir(argv: list[str]) -> list[str]:
    """``show`` without ``--var-dir`` or ``--key`` reads the pair under the panel's VAR_DIR."""
    if argv[:1] == ["show"] and not any(
        arg in ("--var-dir", "--key") or arg.startswith(("--var-dir=", "--key="))
        for arg in argv[1:]
    ):
        return [*argv, "--var-dir", str(settings.VAR_DIR)]
    return argv


class Command(BaseCommand):
    help = keys.__doc__.splitlines()[0] if keys.__doc__ else "Route-table signing keys."

    def run_from_argv(self, argv: list[str]) -> None:
        # routing.keys parses its own arguments (and prints its own --help and errors).
        raise SystemExit(keys.main(with_var_dir(argv[2:])))

    def add_arguments(self, parser) -> None:
        parser.add_argument("argv", nargs="*", help="as for python -m routing.keys")

    def handle(self, *args, argv: list[str], **options) -> None:
        code = keys.main(with_var_dir(list(argv)))
        if code:
            raise CommandError(f"routekeys {' '.join(argv)} failed (exit status {code})")
