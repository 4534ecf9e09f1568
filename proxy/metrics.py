"""Prometheus text exposition (format 0.0.4), written by hand: the numbers already live in
``Engine.stats``, ``Engine.pools``, ``Engine.health`` and the subscriber's ``stats``."""

from __future__ import annotations

import math
from datetime import UTC, datetime


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float | int | None) -> str:
    if value is None:
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "+Inf"
    return repr(value) if isinstance(value, float) else str(value)


def render_metrics(engine, subscriber, worker: str, *, certificates=None, watcher=None) -> str:
    w = f'worker="{_esc(worker)}"'
    stats = engine.stats
    out: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[str, object]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            inner = f"{w},{labels}" if labels else w
            out.append(f"{name}{{{inner}}} {_num(value)}")  # type: ignore[arg-type]

    metric(
        "proxy_requests_total",
        "counter",
        "Requests answered, by backend and status (backend '-' for the proxy's own answers).",
        [
            (f'backend="{_esc(label)}",status="{status}"', count)
            for (label, status), count in sorted(stats.requests.items())
        ],
    )
    cumulative = 0
    buckets = []
    for bound, count in zip(stats.BUCKETS, stats.latency, strict=False):
        cumulative += count
        buckets.append((f'le="{bound}"', cumulative))
    total = cumulative + stats.latency[-1]
    buckets.append(('le="+Inf"', total))
    out.append("# HELP proxy_request_duration_seconds Time from request head to response end.")
    out.append("# TYPE proxy_request_duration_seconds histogram")
    for labels, value in buckets:
        out.append(f"proxy_request_duration_seconds_bucket{{{w},{labels}}} {value}")
    out.append(f"proxy_request_duration_seconds_sum{{{w}}} {stats.latency_sum!r}")
    out.append(f"proxy_request_duration_seconds_count{{{w}}} {total}")
    metric(
        "proxy_rejected_requests_total",
        "counter",
        "Requests refused before forwarding, by status.",
        [(f'status="{s}"', c) for s, c in sorted(stats.rejected.items())],
    )
    metric("proxy_upstream_retries_total", "counter", "Requests sent to a next candidate.",
           [("", stats.retries)])  # fmt: skip
    metric(
        "proxy_fallbacks_total",
        "counter",
        "Requests sent to a backend other than the route table's first choice, by reason "
        "(down: passive health holds it down; else the first attempt's failure).",
        [(f'reason="{_esc(r)}"', c) for r, c in sorted(stats.fallbacks.items())],
    )
    metric("proxy_connections_accepted_total", "counter", "Client connections accepted.",
           [("", stats.connections)])  # fmt: skip
    metric("proxy_connections_open", "gauge", "Client connections open.",
           [("", len(engine.connections))])  # fmt: skip
    pools = sorted(engine.pools.values(), key=lambda p: p.upstream.key)
    metric(
        "proxy_pool_idle_connections",
        "gauge",
        "Idle keep-alive connections per upstream.",
        [(f'backend="{_esc(p.upstream.name)}"', len(p.idle)) for p in pools],
    )
    metric(
        "proxy_pool_active_connections",
        "gauge",
        "Upstream connections carrying a request, per upstream.",
        [(f'backend="{_esc(p.upstream.name)}"', p.active) for p in pools],
    )
    metric(
        "proxy_backend_down",
        "gauge",
        "1 while passive health has marked the backend down.",
        [(f'backend="{_esc(name)}"', 1) for name in sorted(engine.health.down_until)],
    )
    if subscriber is not None:
        s = subscriber.stats
        metric("proxy_route_table_version", "gauge", "Version of the route table held.",
               [("", s.version)])  # fmt: skip
        metric("proxy_route_table_age_seconds", "gauge",
               "Seconds since Redis last confirmed the held table.", [("", s.age)])  # fmt: skip
        metric("proxy_redis_connected", "gauge", "1 while the subscriber is connected to Redis.",
               [("", int(s.connected))])  # fmt: skip
        metric("proxy_route_tables_rejected_total", "counter",
               "Tables read from Redis or the state file and refused (any reason).",
               [("", s.rejected)])  # fmt: skip
        metric("proxy_route_tables_refused_total", "counter",
               "Tables refused, by reason: unsigned, bad_signature, malformed, lower.",
               [(f'reason="{_esc(r)}"', n) for r, n in sorted(s.refused.items())])  # fmt: skip
    if certificates is not None:
        nearest = certificates.nearest_expiry()
        days = None
        if nearest is not None:
            days = round((nearest - datetime.now(UTC)).total_seconds() / 86400, 3)
        metric("proxy_tls_certificates", "gauge",
               "App certificates presented by SNI (besides the platform's).",
               [("", len(certificates.by_name))])  # fmt: skip
        metric("proxy_tls_certificates_failed", "gauge",
               "Bundle entries this proxy could not install (see /tls).",
               [("", len(certificates.failed))])  # fmt: skip
        metric("proxy_tls_nearest_expiry_days", "gauge",
               "Days until the soonest not_after of the app certificates presented (NaN: none).",
               [("", days)])  # fmt: skip
        metric("proxy_tls_bundle_version", "gauge", "Version of the certificate bundle held.",
               [("", certificates.version)])  # fmt: skip
    if watcher is not None:
        stats = watcher.stats()
        metric("proxy_acme_challenges_version", "gauge",
               "Version of the ACME challenge document held.",
               [("", stats["acme"]["version"])])  # fmt: skip
        metric(
            "proxy_signed_documents_refused_total",
            "counter",
            "Certificate bundles and challenge documents refused, by document and reason.",
            [
                (f'document="{kind}",reason="{reason}"', count)
                for kind in ("tls", "acme")
                for reason, count in sorted(stats[kind]["refused"].items())
            ],
        )
    return "\n".join(out) + "\n"
