"""System checks for the hosting settings, so ``manage.py check`` stops a bad deployment early.

Ids are stable: webapps.E001 PANEL_HOST, E002 APPS_DOMAIN, E003 RESERVED_DOMAINS,
E004 WEBAPPS_RELOADER, E005 HOME_ROOT (E006 TRUSTED_PROXIES is checked by
``panel.accounts.checks``, beside the client-address logic it configures).
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register
from django.utils.module_loading import import_string

from routing import InvalidHost, canonical_host


@register()
def check_hosting_settings(app_configs=None, **kwargs) -> list[Error]:
    errors: list[Error] = []
    for name, check_id in (("PANEL_HOST", "webapps.E001"), ("APPS_DOMAIN", "webapps.E002")):
        value = getattr(settings, name)
        try:
            canonical = canonical_host(value)
        except InvalidHost as exc:
            errors.append(Error(f"{name}={value!r} is not a host name: {exc}", id=check_id))
            continue
        if canonical != value:
            errors.append(
                Error(
                    f"{name}={value!r} is not in canonical form",
                    hint=f"use {canonical!r} (lower-case ASCII, no port, no trailing dot)",
                    id=check_id,
                )
            )
    for value in settings.RESERVED_DOMAINS:
        try:
            canonical_host(value)
        except InvalidHost as exc:
            errors.append(
                Error(
                    f"RESERVED_DOMAINS entry {value!r} is not a host name: {exc}", id="webapps.E003"
                )
            )
    try:
        reloader = import_string(settings.WEBAPPS_RELOADER)
    except ImportError as exc:
        errors.append(
            Error(
                f"WEBAPPS_RELOADER={settings.WEBAPPS_RELOADER!r} cannot be imported: {exc}",
                id="webapps.E004",
            )
        )
    else:
        from webapps.reload import Reloader

        if not (isinstance(reloader, type) and issubclass(reloader, Reloader)):
            errors.append(
                Error(
                    f"WEBAPPS_RELOADER={settings.WEBAPPS_RELOADER!r} is not a Reloader class",
                    id="webapps.E004",
                )
            )
    if not settings.HOME_ROOT.is_absolute():
        errors.append(Error(f"HOME_ROOT={settings.HOME_ROOT} is not absolute", id="webapps.E005"))
    return errors
