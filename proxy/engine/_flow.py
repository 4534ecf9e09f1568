"""Flow control of one connection: whether its reads and its writes are paused, and the
transport calls that change that. Both protocols (client and upstream) use it.

Reads are paused by the engine (a peer's buffer is full, a pipelined request waits); writes
are paused by the transport (``pause_writing``/``resume_writing``: its buffer passed the high
water mark), which the exchange relays as a pause of the other side's reads. Once the
connection is closed (``detach``) nothing is paused or resumed any more.
"""

from __future__ import annotations

import asyncio

__all__ = ["FlowControl"]


class FlowControl:
    __slots__ = ("read_paused", "transport", "write_paused")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.read_paused = False
        self.write_paused = False  # the transport's buffer is above its high water mark

    def attach(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def detach(self) -> None:
        """The connection is closed: later pauses and resumes do nothing."""
        self.transport = None

    def pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and self.transport is not None:
            self.read_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
