"""System checks for the account settings, so ``manage.py check`` stops a bad deployment early.

Ids are stable and keep the prefix they were first published with (operators silence them by
id): webapps.E006 TRUSTED_PROXIES, accounts.E001 the owner uid range and the panel's uid.
The checks of the settings' own syntax (SECRET_KEY, REDIS_URL) are the project's and run when
the settings load (``panel.env``, ``panel.settings``).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.core.checks import Error, register


@register()
def check_account_settings(app_configs=None, **kwargs) -> list[Error]:
    errors: list[Error] = []
    for cidr in settings.TRUSTED_PROXIES:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            errors.append(Error(f"TRUSTED_PROXIES entry {cidr!r}: {exc}", id="webapps.E006"))
    low, high = settings.OWNER_UID_MIN, settings.OWNER_UID_MAX
    if low > high:
        errors.append(
            Error(f"OWNER_UID_MIN={low} is above OWNER_UID_MAX={high}", id="accounts.E001")
        )
    for name in ("PANEL_UID", "PANEL_GID"):
        value = getattr(settings, name)
        if low <= value <= high:
            errors.append(
                Error(
                    f"{name}={value} lies in the owner range {low}..{high}: a tenant could get it",
                    id="accounts.E001",
                )
            )
    return errors
