"""Microbenchmark: the engine's Python work per small request, without sockets.

    .venv/bin/python bench/engine_micro.py [--requests 5000] [--repeat 7] [--only KIND]

A client connection and one pooled upstream connection get in-memory transports; each
request is fed as one read (a `wrk`-like request and a browser-like one), the upstream's
answer as one read (a small nginx response). Prints the CPU microseconds per request (thread
time, best of --repeat runs, so other work on the machine matters less than wall time would).
Quick to run (seconds); the end-to-end figures come from bench/proxy_bench.py.

Instructions per request, which do not depend on the machine's load: run one kind under
callgrind twice with different request counts and divide the difference in instructions
("Collected" in valgrind's output) by the difference in requests, so start-up and warm-up
cancel out:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python \
        bench/engine_micro.py --only wrk-like --repeat 1 --requests 2000
    (again with --requests 6000; instructions per request = (I6000 - I2000) / 4000)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.engine import Engine, Upstream, UpstreamConnection
from proxy.front import FrontResolver
from routing import Backend, RouteTable

REQUESTS = {
    "wrk-like": b"GET /small HTTP/1.1\r\nHost: app.bench\r\n\r\n",
    "browser-like": (
        b"GET /small?x=1 HTTP/1.1\r\nHost: app.bench\r\n"
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
        b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
        b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
        b"Connection: keep-alive\r\nCookie: a=b; c=d\r\nUpgrade-Insecure-Requests: 1\r\n\r\n"
    ),
}
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sat, 28 Nov 2026 22:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\n"
    b"hello, world\n"
)


class MemoryTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.last = b""

    def write(self, data) -> None:
        self.last = data

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


async def measure(request: bytes, requests: int, repeat: int) -> float:
    table = RouteTable(1, "rendezvous-xxh3-v1", (Backend("origin", "127.0.0.1:9"),))
    engine = Engine(lambda head, client: None)
    engine.resolver = FrontResolver(lambda: table, "panel.localhost", engine)
    pool = engine.pool(Upstream.parse("127.0.0.1:9", "origin"))
    upstream = UpstreamConnection(pool, asyncio.get_running_loop())
    upstream.connection_made(MemoryTransport())
    pool.put(upstream)
    client = engine.protocol_factory()()
    client_transport = MemoryTransport()
    client.connection_made(client_transport)
    for _ in range(1000):  # warm up (memo tables, caches)
        client.data_received(request)
        upstream.data_received(RESPONSE)
        engine.flush_writes()  # what the loop does at the end of each iteration
    if not client_transport.last.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"unexpected answer: {client_transport.last[:80]!r}")
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        for _ in range(requests):
            client.data_received(request)
            upstream.data_received(RESPONSE)
            engine.flush_writes()
        best = min(best, time.thread_time() - start)
    client.transport = upstream.transport = None
    engine.connections.clear()
    return best / requests * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per run")
    parser.add_argument("--repeat", type=int, default=7, help="runs; the best one counts")
    parser.add_argument("--only", choices=sorted(REQUESTS), help="measure one kind of request")
    args = parser.parse_args()
    try:
        import uvloop

        new_loop = uvloop.new_event_loop
    except ImportError:
        new_loop = asyncio.new_event_loop
    for name, request in REQUESTS.items():
        if args.only and name != args.only:
            continue
        with asyncio.Runner(loop_factory=new_loop) as runner:
            us = runner.run(measure(request, args.requests, args.repeat))
        print(f"{name:13} {us:6.2f} us of CPU per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
