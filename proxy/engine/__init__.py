"""The asyncio shell of the forwarding engine: protocols that feed httptools and react to its
events, per-upstream keep-alive pools, timers, flow control. The decisions it takes are the
pure core's (``proxy.core``); this package carries them out.

One ``Engine`` serves any number of listeners. For each request it asks a *resolver* where
to send it; the resolver may be sync or async and returns a ``Route``: ordered upstream
candidates (TCP or unix socket), or a direct ``Answer``, plus response headers to add.

Life of a request: ``ClientConnection`` feeds bytes to httptools; at the end of the head the
pure core validates it (``core.validate_request``) and an ``Exchange`` is queued. The exchange
resolves a route, takes a pooled ``UpstreamConnection`` (or connects), writes the rebuilt head
and the body, and relays the response; its phases and the moves between them are listed at the
top of ``_exchange.py``. Completion happens after a parser call returns, so a response head and
the first body bytes leave in one write.

Timers are lazy: each connection keeps one timer handle and a deadline; moving a deadline later
costs a float store, the handle re-arms itself when it fires early. Which timer runs when is
rule T of ``proxy.core``.

Writes that end a message (a whole response passed through to the client, a whole bodyless
request head to an upstream) are coalesced to the end of the event-loop iteration
(``Engine.write_later``): the peers then wake once for a batch of messages instead of once per
message, which on loopback saves more CPU than the Python work the batch costs. Any other write,
EOF or close on that connection first flushes the batch, so bytes never change order.

Modules (private; import the names below from ``proxy.engine``):

    _config.py      Upstream, Answer, Route, Client, EngineConfig: what users hand the engine
    _engine.py      Engine: listeners, coalesced writes, shutdown, the pools it owns
    _downstream.py  ClientConnection: one client's wire, its requests in order
    _exchange.py    Exchange: one request and its response, in named phases
    _upstream.py    UpstreamConnection: one upstream's wire
    _pool.py        Pool (idle connections per upstream), Health, Stats
    _flow.py        FlowControl: read/write pause state of one connection
    _timer.py       LazyTimer: one lazy deadline per connection
"""

from proxy.engine._config import (
    HIGH_WATER,
    MAX_RESPONSE_HEAD,
    Answer,
    Client,
    EngineConfig,
    FileBody,
    Resolver,
    Route,
    Upstream,
)
from proxy.engine._downstream import ClientConnection
from proxy.engine._engine import Engine
from proxy.engine._exchange import TRANSITIONS, Exchange, InvalidTransition, Phase
from proxy.engine._flow import FlowControl
from proxy.engine._pool import Health, Pool, Stats
from proxy.engine._timer import LazyTimer
from proxy.engine._upstream import UpstreamConnection

__all__ = [
    "HIGH_WATER",
    "MAX_RESPONSE_HEAD",
    "TRANSITIONS",
    "Answer",
    "Client",
    "ClientConnection",
    "Engine",
    "EngineConfig",
    "Exchange",
    "FileBody",
    "FlowControl",
    "Health",
    "InvalidTransition",
    "LazyTimer",
    "Phase",
    "Pool",
    "Resolver",
    "Route",
    "Stats",
    "Upstream",
    "UpstreamConnection",
]
