"""Who may touch which app: owners only, found by the canonical key of any spelling.

Anything else (someone else's app, someone else's username in the path, an unknown or
unparseable domain) is a 404, so an outsider cannot even learn that an app exists; each refusal
is written to the audit trail first.
"""

from __future__ import annotations

from django.http import Http404

from panel.accounts.access import check_path_user
from panel.accounts.actions import record_denied
from panel.accounts.models import User
from panel.accounts.origin import Origin
from routing import InvalidHost, canonical_host
from webapps.models import WebApp

__all__ = ["check_path_user", "owned_webapp"]


def owned_webapp(
    user: User, path_username: str, raw_domain: str, action: str, origin: Origin
) -> WebApp:
    check_path_user(user, path_username, action, origin)
    try:
        domain = canonical_host(raw_domain)
    except InvalidHost:
        record_denied(user, action, raw_domain, origin, "not a domain name")
        raise Http404("No such web app.") from None
    webapp = WebApp.objects.filter(owner=user, domain=domain).select_related("owner").first()
    if webapp is None:
        # Someone else's app and a missing app look the same from outside.
        record_denied(user, action, domain, origin, "no such app of theirs")
        raise Http404("No such web app.")
    return webapp
