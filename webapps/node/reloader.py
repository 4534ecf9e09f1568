"""The panel's reloader when the panel runs on a node (``WEBAPPS_RELOADER``, set by the node).

A reload URL is routed to the node that serves the app, so the panel process answering it runs
on that node: it asks its own node, over the control socket, to reload the app there.
"""

from __future__ import annotations

from django.conf import settings

from webapps.node import client
from webapps.node.control import ControlError
from webapps.reload import Reloader, ReloadError, ReloadResult


class NodeReloader(Reloader):
    def reload(self, webapp) -> ReloadResult:
        try:
            answer = client.reload(webapp.domain)
        except ControlError as exc:
            # reload_app records it as a failed reload with this message
            raise ReloadError(
                f"node {settings.NODE_NAME or '(unnamed)'} did not answer: {exc}"
            ) from exc
        return ReloadResult(
            ok=answer.get("status") == "OK",
            backend=str(answer.get("backend") or settings.NODE_NAME),
            duration_ms=int(answer.get("duration_ms") or 0),
            message=str(answer.get("message") or ""),
            log_tail=str(answer.get("log_tail") or ""),
        )
