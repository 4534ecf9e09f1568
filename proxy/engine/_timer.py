"""One lazy deadline per connection: moving a deadline later costs a float store; the handle
re-arms itself when it fires early. Which timer runs when is rule T of ``proxy.core``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from proxy.core import Timer

__all__ = ["LazyTimer"]


class LazyTimer:
    __slots__ = ("callback", "deadline", "handle", "kind", "loop", "when")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[int], None]) -> None:
        self.loop = loop
        self.callback = callback
        self.handle: asyncio.TimerHandle | None = None
        self.when = 0.0  # when the handle fires
        self.deadline = 0.0
        self.kind: int = Timer.NONE  # a Timer, or its plain value (see _downstream.py)

    def arm(self, kind: int, seconds: float) -> None:
        self.arm_at(kind, self.loop.time() + seconds)

    def arm_at(self, kind: int, deadline: float) -> None:
        """``arm`` for a caller that already read the clock."""
        self.kind = kind
        self.deadline = deadline
        handle = self.handle
        if handle is None:
            self.handle = self.loop.call_at(deadline, self._fire)
            self.when = deadline
        elif self.when > deadline:
            handle.cancel()
            self.handle = self.loop.call_at(deadline, self._fire)
            self.when = deadline

    def disarm(self) -> None:
        self.kind = Timer.NONE

    def cancel(self) -> None:
        self.kind = Timer.NONE
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _fire(self) -> None:
        self.handle = None
        if not self.kind:
            return
        if self.loop.time() < self.deadline:
            self.handle = self.loop.call_at(self.deadline, self._fire)
            self.when = self.deadline
            return
        kind, self.kind = self.kind, Timer.NONE
        self.callback(kind)
