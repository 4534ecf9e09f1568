"""The front proxy's routing: request -> canonical key -> ranked backends, from the table held
in memory (refreshed in the background by ``routing.subscriber.RouteSubscriber``), and the
admin port's answers (/healthz, /metrics, /route).

No Redis call and no Django on the request path: the resolver reads ``source()`` (the
subscriber's current table) and memoises the route per key for that table. With a ``tls``
state (``proxy.tls.TlsState``, kept by the certificate watcher) it also answers ACME HTTP-01
challenges itself (``/.well-known/acme-challenge/<token>``, on every scheme, for every host) and
redirects plain HTTP of the apps that force HTTPS: 301 for GET and HEAD, 308 otherwise.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from proxy.core import HttpError, RequestHead
from proxy.engine import Answer, Client, Engine, Route, Upstream
from proxy.metrics import render_metrics
from proxy.tls import TlsState
from routing import InvalidHost, RouteTable, route_key

__all__ = ["AdminResolver", "FrontResolver", "fleet_report"]

MEMO_KEYS = 50_000
NO_ROUTE = Route()
ACME_PREFIX = b"/.well-known/acme-challenge/"
NO_CHALLENGE = Route(answer=Answer(404, b"404 Not Found: no such challenge\n"), label="acme")


class FrontResolver:
    """Routes by ``routing.route_key(host, path, panel_host)`` over the held table's ranking;
    backends marked down by passive health go to the end of the list."""

    def __init__(
        self,
        source: Callable[[], RouteTable | None],
        panel_host: str,
        engine: Engine | None = None,
        tls: TlsState | None = None,
    ) -> None:
        self.source = source
        self.panel_host = panel_host
        self.engine = engine
        self.tls = tls
        self._table: RouteTable | None = None
        self._routes: dict[str, Route] = {}
        self._upstreams: dict[tuple[str, str], Upstream] = {}
        # Host header value -> its key, for hosts other than the panel's (whose key also
        # depends on the path). Filled by route_key itself, so it never disagrees with it.
        self._host_keys: dict[bytes, str] = {}
        # Host header value -> its route over ``_table``, for the same hosts: one lookup per
        # request. Emptied with ``_routes`` when the table changes.
        self._host_routes: dict[bytes, Route] = {}

    def key(self, head: RequestHead) -> str:
        key = self._host_keys.get(head.host)
        if key is not None:
            return key
        try:
            host = head.host.decode("ascii")
            key = route_key(host, head.path, self.panel_host)
            if route_key(host, "/", self.panel_host) != route_key(
                self.panel_host, "/", self.panel_host
            ):
                if len(self._host_keys) >= MEMO_KEYS:
                    del self._host_keys[next(iter(self._host_keys))]
                self._host_keys[head.host] = key
            return key
        except InvalidHost as exc:
            raise HttpError(400, str(exc)) from None

    def route(self, table: RouteTable, key: str) -> Route:
        if table is not self._table:
            self._table = table
            self._routes = {}
            self._host_routes = {}
        route = self._routes.get(key)
        if route is None:
            ups = tuple(self._upstream(b.name, b.address) for b in table.ranking(key))
            route = Route(upstreams=ups)
            if len(self._routes) >= MEMO_KEYS:
                del self._routes[next(iter(self._routes))]
            self._routes[key] = route
        return route

    def upstreams(self, table: RouteTable, key: str) -> tuple[Upstream, ...]:
        return self.route(table, key).upstreams

    def _upstream(self, name: str, address: str) -> Upstream:
        up = self._upstreams.get((name, address))
        if up is None:
            up = self._upstreams[(name, address)] = Upstream.parse(address, name)
        return up

    def _challenge(self, head: RequestHead) -> Route:
        token = head.target[len(ACME_PREFIX) :].decode("latin-1")
        answer = self.tls.tokens.get(token) if self.tls is not None else None
        if answer is None:
            return NO_CHALLENGE
        return Route(answer=Answer(200, answer, b"application/octet-stream"), label="acme")

    def _redirect(self, head: RequestHead, key: str) -> Route:
        port = self.tls.https_port if self.tls is not None else None
        where = key.encode("ascii") + (b"" if port in (None, 443) else b":%d" % port)
        status = 301 if head.method in (b"GET", b"HEAD") else 308
        location = b"https://" + where + head.target
        body = b"%d: this site is served over HTTPS: %s\n" % (status, location)
        return Route(answer=Answer(status, body, headers=((b"location", location),)),
                     label="https-redirect")  # fmt: skip

    def __call__(self, head: RequestHead, client: Client) -> Route:
        tls = self.tls
        if tls is not None:
            if head.target.startswith(ACME_PREFIX):
                return self._challenge(head)
            if tls.force_https and client.scheme == "http":
                # The host's own key (a panel reload URL routes by another domain's key).
                key = self._host_keys.get(head.host)
                if key is None:
                    try:
                        key = route_key(head.host.decode("ascii"), "/", self.panel_host)
                    except InvalidHost as exc:
                        raise HttpError(400, str(exc)) from None
                if key in tls.force_https:
                    return self._redirect(head, key)
        table = self.source()
        if table is None:
            return NO_ROUTE  # 503 with Retry-After: no table yet
        route = self._host_routes.get(head.host) if table is self._table else None
        if route is None:
            route = self.route(table, self.key(head))
            if head.host in self._host_keys:  # its key does not depend on the path
                if len(self._host_routes) >= MEMO_KEYS:
                    del self._host_routes[next(iter(self._host_routes))]
                self._host_routes[head.host] = route
        engine = self.engine
        if engine is not None and engine.health.down_until:
            ordered = engine.health.order(route.upstreams)
            if ordered != route.upstreams:
                if ordered[0] is not route.upstreams[0]:
                    # the table's first choice is held down: a fallback (decision 0049)
                    engine.stats.fallbacks["down"] += 1
                return Route(upstreams=ordered)
        return route


class AdminResolver:
    """The admin port: every answer is produced here, nothing is forwarded."""

    def __init__(
        self,
        front: FrontResolver,
        engine: Engine,
        subscriber,
        worker: str,
        *,
        certificates=None,
        watcher=None,
        token: str = "",
    ) -> None:
        self.front = front
        self.engine = engine
        self.subscriber = subscriber
        self.worker = worker
        self.certificates = certificates
        self.watcher = watcher
        # "" (loopback only, checked at start): no token asked for
        self.authorization = b"Bearer " + token.encode() if token else b""

    def __call__(self, head: RequestHead, client: Client) -> Route:
        if self.authorization and not self._authorized(head):
            return Route(
                answer=Answer(
                    401,
                    b"401 Unauthorized: Authorization: Bearer <token> needed\n",
                    headers=((b"WWW-Authenticate", b'Bearer realm="proxy admin"'),),
                )
            )
        url = urlsplit(head.path)
        if head.method not in (b"GET", b"HEAD"):
            return Route(answer=Answer(405, b"405 Method Not Allowed\n"))
        if url.path == "/healthz":
            table = self.front.source()
            if table is None:
                return Route(answer=Answer(503, b"not ready: no route table yet\n"))
            return Route(answer=Answer(200, b"ok version=%d\n" % table.version))
        if url.path == "/metrics":
            text = render_metrics(
                self.engine,
                self.subscriber,
                self.worker,
                certificates=self.certificates,
                watcher=self.watcher,
            )
            return Route(
                answer=Answer(200, text.encode(), b"text/plain; version=0.0.4; charset=utf-8")
            )
        if url.path == "/route":
            return Route(answer=self._route(parse_qs(url.query)))
        if url.path == "/tls":
            return Route(answer=self._tls())
        return Route(answer=Answer(404, b"404 Not Found\n"))

    def _authorized(self, head: RequestHead) -> bool:
        given = [v for n, v in head.headers if n.lower() == b"authorization"]
        return len(given) == 1 and hmac.compare_digest(given[0].strip(), self.authorization)

    def _route(self, query: dict[str, list[str]]) -> Answer:
        host = query.get("host", [""])[0]
        path = query.get("path", ["/"])[0]
        table = self.front.source()
        doc: dict = {"host": host, "path": path}
        try:
            key = route_key(host, path, self.front.panel_host)
        except InvalidHost as exc:
            doc["error"] = str(exc)
            return _json(400, doc)
        doc["key"] = key
        if table is None:
            doc["error"] = "no route table yet"
            return _json(503, doc)
        ups = self.engine.health.order(self.front.upstreams(table, key))
        doc.update(
            table_version=table.version,
            backend=ups[0].name if ups else None,
            ranking=[u.name for u in ups],
            down=[u.name for u in ups if self.engine.health.is_down(u.name)],
        )
        return _json(200, doc)

    def _tls(self) -> Answer:
        """The certificates this worker presents (names, serials, expiry; never a key)."""
        store = self.certificates
        watcher = self.watcher
        doc: dict = {
            "bundle_version": store.version if store is not None else None,
            "challenges_version": watcher.challenges.version
            if watcher is not None and watcher.challenges is not None
            else None,
            "certificates": {
                name: {"serial": i.serial, "not_after": i.not_after.isoformat()}
                for name, i in sorted(store.by_name.items())
            }
            if store is not None
            else {},
            "failed": dict(store.failed) if store is not None else {},
        }
        return _json(200, doc)


def _json(status: int, doc: dict) -> Answer:
    return Answer(status, json.dumps(doc, indent=1).encode() + b"\n", b"application/json")


def fleet_report(
    engine: Engine, subscriber, address: str, meter, *, down: bool = True, certificates=None
) -> dict:
    """This member's heartbeat fields (``routing.fleet.Member``) from its engine and subscriber;
    ``down``: report the backends passive health holds down (a node's upstreams are its apps);
    ``certificates``: the TLS listener's ``CertificateStore`` (how many it holds, and the
    nearest expiry), None without one."""
    stats = subscriber.stats
    held = {}
    if certificates is not None:
        nearest = certificates.nearest_expiry()
        held = {
            "certificates": len(certificates.by_name),
            "certs_not_after": None if nearest is None else nearest.timestamp(),
        }
    return {
        **held,
        "address": address,
        "version": stats.version,
        "table_age": None if stats.age is None else round(stats.age, 3),
        "redis_connected": stats.connected,
        "down": sorted(n for n in list(engine.health.down_until) if engine.health.is_down(n))
        if down
        else [],
        "rps": meter.rate(sum(engine.stats.requests.values())),
    }
