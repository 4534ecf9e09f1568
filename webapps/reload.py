"""How a reload is carried out: one small interface, chosen by ``settings.WEBAPPS_RELOADER``.

A panel process that runs on a node gets ``NodeReloader`` (the node sets ``WEBAPPS_RELOADER`` in
the panel's environment): the reload URL was routed to the node that serves the app, so the
panel asks its own node, over the control socket, to reload it there. A panel outside any node
uses ``NoNodeReloader``, which says so. Either way the caller
gets a ``ReloadResult`` and records it: a reloader that cannot reach its node raises
``ReloadError`` and ``reload_app`` turns that into a failed result.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils.module_loading import import_string

from webapps import node_client
from webapps.node.outcome import Result, summary_of

if TYPE_CHECKING:
    from webapps.models import WebApp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    backend: str  # the node that carried out the reload ("" when none did)
    duration_ms: int | None  # None when nothing was restarted (the app was not running there)
    message: str
    log_tail: str = ""  # the last lines of the app's log, shown when a reload fails
    result: str = ""  # a ``webapps.node.outcome.Result``; "" means reloaded or failed, by ``ok``
    workers: int | None = None  # reloaded: how many new workers answer
    generation: int | None = None  # reloaded: the generation now serving (X-App-Generation)
    # The node's route table sends the app's traffic to ``traffic_backend``, not to ``backend``.
    misrouted: bool = False
    traffic_backend: str = ""

    def __post_init__(self) -> None:
        if not self.result:
            object.__setattr__(self, "result", Result.RELOADED if self.ok else Result.FAILED)
        elif self.result not in Result.__members__.values():
            raise ValueError(f"unknown reload result {self.result!r}")

    def summary(self) -> str:
        """The one sentence for this outcome (``webapps.node.outcome.summary``)."""
        return summary_of(self)


class ReloadError(Exception):
    """The reload could not be carried out at all (node unreachable, protocol error)."""


class Reloader:
    def reload(self, webapp: WebApp) -> ReloadResult:
        raise NotImplementedError


class NoNodeReloader(Reloader):
    """The panel runs outside any node: nothing here can restart the app."""

    def reload(self, webapp: WebApp) -> ReloadResult:
        return ReloadResult(
            ok=False,
            backend=settings.NODE_NAME,
            duration_ms=0,
            message=f"no node serves {webapp.domain} here",
        )


class NodeReloader(Reloader):
    """The panel runs on a node: that node reloads the app (``webapps.node_client.reload``)."""

    def reload(self, webapp: WebApp) -> ReloadResult:
        try:
            answer = node_client.reload(webapp.domain)
        except node_client.ControlError as exc:
            # reload_app records it as a failed reload with this message
            raise ReloadError(
                f"node {settings.NODE_NAME or '(unnamed)'} did not answer: {exc}"
            ) from exc
        ok = answer.get("status") == "OK"
        result = answer.get("result")
        if result not in Result.__members__.values() or (result == Result.FAILED) == ok:
            result = ""  # a node that does not say (an older one): reloaded or failed, by status
        return ReloadResult(
            ok=ok,
            backend=str(answer.get("backend") or settings.NODE_NAME),
            duration_ms=_count(answer.get("duration_ms")),
            message=str(answer.get("message") or ""),
            log_tail=str(answer.get("log_tail") or ""),
            result=result or "",
            workers=_count(answer.get("workers")),
            generation=_count(answer.get("generation")),
            misrouted=answer.get("misrouted") is True,
            traffic_backend=str(answer.get("traffic_backend") or ""),
        )


def _count(value: object) -> int | None:
    """A non-negative integer from the node's answer, or None."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def get_reloader() -> Reloader:
    return import_string(settings.WEBAPPS_RELOADER)()


def reload_app(webapp: WebApp) -> ReloadResult:
    started = time.monotonic()
    try:
        return get_reloader().reload(webapp)
    except ReloadError as exc:
        log.warning("reload of %s failed: %s", webapp.domain, exc)
        return ReloadResult(
            ok=False,
            backend=settings.NODE_NAME,
            duration_ms=round((time.monotonic() - started) * 1000),
            message=str(exc) or exc.__class__.__name__,
        )
