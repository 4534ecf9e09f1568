"""Soak on the several-host bed (tests/e2e/cluster/bed.py): mixed traffic through both proxies,
API and Web tab reloads, pool changes every few seconds, and one fault every 30 s in turn: the
Redis master killed (it comes back as a replica), a node host cut off, a proxy cut off from
Redis, loss on the proxies' Redis link (each but the first lasting 10 s).

Counted, and printed at the end:
- misrouted reloads: a reload whose node (its ReloadEvent) is not where that app's traffic
  went, through the same proxy, just before and just after it (a reload between two different
  answers, during a move, is counted as "in a move" instead);
- duplicated POSTs: a reload with more than one ReloadEvent;
- lost pool changes: committed versions that some proxy never reached by the end.

A proxy does not believe a visitor's X-Request-ID, so a reload's events are found by time
instead: each app is reloaded through one proxy only, one reload at a time, and the app's
ReloadEvents made between a reload's sending and its answer are that reload's (the hosts share
one clock).

    .venv/bin/python bench/soak.py [--seconds 150]     (as root: it builds network namespaces)
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.cluster.bed import PROXIES, Load, PoolChanger
from tests.e2e.cluster.conftest import PASSWORD, Cluster, cluster_bed
from tests.support import wait_until


class WebSession:
    """A signed-in browser without the browser, through one proxy."""

    def __init__(self, cluster: Cluster, proxy: str, username: str) -> None:
        self.cluster, self.proxy, self.cookies = cluster, proxy, {}
        self.request("GET", "/accounts/login/")
        reply = self.post("/accounts/login/", {"username": username, "password": PASSWORD})
        if reply.status != 302:
            raise RuntimeError(f"sign-in as {username} answered {reply.status}")

    def request(self, method: str, path: str, headers=None, body=None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        reply = self.cluster.bed.via(self.proxy, method, path, vhost=self.cluster.panel_host,
                                     headers=headers, body=body, timeout=30)  # fmt: skip
        raw = reply.headers.get("set-cookie")
        if raw:
            jar = SimpleCookie()
            jar.load(raw)
            self.cookies.update({k: m.value for k, m in jar.items()})
        return reply

    def post(self, path: str, data: dict[str, str]):
        host = self.cluster.panel_host
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-CSRFToken": self.cookies.get("csrftoken", ""),
            "Origin": f"http://{host}",
            "Referer": f"http://{host}/",
        }
        data = {"csrfmiddlewaretoken": self.cookies.get("csrftoken", ""), **data}
        return self.request("POST", path, headers, urlencode(data).encode())


class Soak:
    def __init__(self, cluster: Cluster, seconds: float) -> None:
        self.cluster, self.bed, self.seconds = cluster, cluster.bed, seconds
        self.domains = list(cluster.apps.values())
        self.owner = {d: u for u, d in cluster.apps.items()}
        # proxy, domain, before, after, via, and when it was sent and answered (time.time())
        self.reloads: list[dict] = []
        self.versions: list[int] = []
        self.faults: list[str] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def traffic_backend(self, proxy: str, domain: str) -> str | None:
        try:
            reply = self.bed.via(proxy, "GET", "/", vhost=domain, timeout=10)
        except OSError:
            return None
        return reply.headers.get("x-backend") if reply.status == 200 else None

    def reloader(self, proxy: str) -> None:
        sessions: dict[str, WebSession] = {}
        # Each app is reloaded through one proxy only, so its reloads never overlap.
        mine = self.domains[PROXIES.index(proxy) :: len(PROXIES)]
        for i in itertools.count():
            if self.stop.is_set():
                return
            domain = mine[i % len(mine)]
            user = self.owner[domain]
            via = "web" if i % 2 else "api"
            before = self.traffic_backend(proxy, domain)
            sent = time.time()
            path = f"/user/{user}/webapps/{domain}/reload/"
            try:
                if via == "api":
                    reply = self.bed.via(
                        proxy, "POST", "/api/v0" + path, vhost=self.cluster.panel_host,
                        headers={"Authorization": f"Token {self.cluster.tokens[user]}"},
                        timeout=30,
                    )  # fmt: skip
                else:
                    if user not in sessions:
                        sessions[user] = WebSession(self.cluster, proxy, user)
                    reply = sessions[user].post(path, {})
                status = reply.status
            except (OSError, RuntimeError) as exc:
                status = repr(exc)
            answered = time.time()
            after = self.traffic_backend(proxy, domain)
            self.reloads.append({"sent": sent, "answered": answered, "proxy": proxy,
                                 "domain": domain,
                                 "before": before, "after": after, "via": via,
                                 "status": status})  # fmt: skip
            time.sleep(0.2)  # a person's pace, and under the reload throttle

    def changes(self, changer: PoolChanger) -> None:
        for weight in itertools.cycle((2, 1)):
            if self.stop.wait(7):
                return
            try:
                self.versions.append(changer.set_weight("b3", weight))
            except RuntimeError as exc:
                self.errors.append(f"pool change: {exc}")

    def fault(self, index: int) -> None:
        bed = self.bed
        kind = ("master", "node", "proxy", "loss")[index % 4]
        started = time.monotonic()
        if kind == "master":
            old = bed.master_host()
            bed.kill(f"redis-{old}")
            wait_until(lambda: bed.master_host() != old, 30, interval=0.1, what="a promotion")
            bed.start_redis(old, bed.master())
            wait_until(bed.redis_settled, 30, interval=0.2, what="the group whole again")
        elif kind == "node":
            for net in ("back", "redis"):
                bed.link("b2", net, up=False)
            self.stop.wait(10)
            for net in ("back", "redis"):
                bed.link("b2", net, up=True)
        elif kind == "proxy":
            bed.link("p2", "redis", up=False)
            self.stop.wait(10)
            bed.link("p2", "redis", up=True)
        else:
            for proxy in PROXIES:
                bed.lossy(proxy, "redis", loss_percent=5, delay_ms=200)
            self.stop.wait(10)
            for proxy in PROXIES:
                bed.clear_lossy(proxy, "redis")
        self.faults.append(f"{kind} ({time.monotonic() - started:.1f} s)")

    def run(self) -> dict:
        changer = PoolChanger(self.bed)
        loads = [Load(self.bed, proxy, self.domains) for proxy in PROXIES]
        workers = [threading.Thread(target=self.reloader, args=(p,), daemon=True) for p in PROXIES]
        workers.append(threading.Thread(target=self.changes, args=(changer,), daemon=True))
        try:
            with loads[0], loads[1]:
                for worker in workers:
                    worker.start()
                end = time.monotonic() + self.seconds
                for index in itertools.count():
                    next_fault = time.monotonic() + 30
                    if next_fault > end:
                        break
                    self.stop.wait(max(0.0, next_fault - time.monotonic()))
                    self.fault(index)
                self.stop.wait(max(0.0, end - time.monotonic()))
                self.stop.set()
                for worker in workers:
                    worker.join(60)
        finally:
            self.stop.set()
            changer.close()
        return self.judge(loads)

    def judge(self, loads: list[Load]) -> dict:
        rows = json.loads(self.bed.run_python(
            "import json\nfrom webapps.models import ReloadEvent\n"
            f"domains = {sorted(set(self.domains))!r}\n"
            "rows = ReloadEvent.objects.filter(webapp__domain__in=domains).order_by('id')"
            ".values_list('webapp__domain', 'backend', 'created_at')\n"
            "print(json.dumps([(d, b, c.isoformat()) for d, b, c in rows]))"
        ).splitlines()[-1])  # fmt: skip
        by_domain: dict[str, list[tuple[float, str]]] = {}
        for domain, backend, created in rows:
            by_domain.setdefault(domain, []).append(
                (datetime.fromisoformat(created).timestamp(), backend)
            )
        misrouted, in_a_move, not_done, duplicated = [], 0, [], 0
        for reload in self.reloads:
            landed = [b for t, b in by_domain.get(reload["domain"], [])
                      if reload["sent"] <= t <= reload["answered"]]  # fmt: skip
            duplicated += int(len(landed) > 1)
            if not landed:
                not_done.append(reload)
                continue
            if reload["before"] != reload["after"] or reload["before"] is None:
                in_a_move += 1
            elif landed[0] != reload["before"]:
                misrouted.append({**reload, "landed": landed[0]})
        last = max(self.versions) if self.versions else None
        final = {}
        if last is not None:
            # A proxy that never gets there shows as lost pool changes below.
            with contextlib.suppress(TimeoutError):
                wait_until(lambda: all((self.bed.proxy_version(p) or 0) >= last for p in PROXIES),
                           15, interval=0.1, what=f"version {last} on both proxies")  # fmt: skip
            final = {p: self.bed.proxy_version(p) for p in PROXIES}
        lost = [v for v in self.versions if any((final.get(p) or 0) < v for p in PROXIES)]
        return {
            "seconds": self.seconds,
            "faults": self.faults,
            "requests_sent": sum(load.sent for load in loads),
            "requests_failed": sum(len(load.failed) for load in loads),
            "reloads": len(self.reloads),
            "reloads_web": sum(r["via"] == "web" for r in self.reloads),
            "reloads_not_done": len(not_done),
            "reloads_in_a_move": in_a_move,
            "misrouted_reloads": len(misrouted),
            "duplicated_posts": duplicated,
            "pool_changes": len(self.versions),
            "lost_pool_changes": len(lost),
            "final_versions": final,
            "errors": self.errors[:5],
            "misrouted_examples": misrouted[:3],
            "not_done_examples": not_done[:3],
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=150.0)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="soak-") as var_dir,
        cluster_bed(Path(var_dir)) as cluster,
    ):
        result = Soak(cluster, args.seconds).run()
    for key, value in result.items():
        print(f"{key:>20}: {value}")
    bad = result["misrouted_reloads"] or result["duplicated_posts"] or result["lost_pool_changes"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
