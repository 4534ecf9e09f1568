"""The last lines of an app's logs, as the node that serves it has them, for the Web tab.

The node does the reading (``webapps.node_client.app_logs``); this module turns its answer, or
the reason there is none, into what the page shows, so that a node that cannot be reached costs
the page one line of explanation rather than an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from webapps.node.control import ControlError
from webapps.node_client import app_logs

LINES = 50
LOG_TITLES = (("error", "Error log"), ("server", "Server log"), ("access", "Access log"))


@dataclass(frozen=True)
class AppLogs:
    backend: str
    logs: list[tuple[str, str]] = field(default_factory=list)  # (title, text), in page order
    problem: str = ""


def logs_for(domain: str, backend: str) -> AppLogs:
    """``domain``'s log tails on ``backend`` (the backend the route table gives it)."""
    if not backend:
        return AppLogs(backend="", problem="No backend serves this app, so it has no logs yet.")
    try:
        tails = app_logs(domain, LINES, backend=backend)
    except (ControlError, OSError, ValueError) as exc:
        return AppLogs(backend=backend, problem=f"Could not read the logs on {backend}: {exc}")
    return AppLogs(
        backend=backend, logs=[(title, tails.get(kind, "")) for kind, title in LOG_TITLES]
    )
