"""The panel's reloader when the panel runs on a node (``WEBAPPS_RELOADER``, set by the node).

A reload URL is routed to the node that serves the app, so the panel process answering it runs
on that node: it asks its own node, over the control socket, to reload the app there.
"""

from __future__ import annotations

import time

from django.conf import settings

from webapps.node import client
from webapps.node.control import ControlError
from webapps.reload import Reloader, ReloadResult


class NodeReloader(Reloader):
    def reload(self, webapp) -> ReloadResult:
        node = settings.NODE_NAME or "this node"
        started = time.monotonic()
        try:
            answer = client.reload(webapp.domain)
        except ControlError as exc:
            return ReloadResult(
                ok=False,
                backend=settings.NODE_NAME,
                duration_ms=int((time.monotonic() - started) * 1000),
                message=f"node {node} did not answer: {exc}",
            )
        return ReloadResult(
            ok=answer.get("status") == "OK",
            backend=str(answer.get("backend") or settings.NODE_NAME),
            duration_ms=int(answer.get("duration_ms") or 0),
            message=str(answer.get("message") or ""),
            log_tail=str(answer.get("log_tail") or ""),
        )
