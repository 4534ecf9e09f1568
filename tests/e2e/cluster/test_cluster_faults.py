"""Faults on the several-host bed (bed.py), each with its figures printed: requests sent and
failed, and the time the platform took to converge. Deadlines are the issue's bounds, as poll
deadlines; the tests run in file order on one bed and leave it whole for the next."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import time
import uuid

import pytest

from tests.e2e.cluster.bed import (
    PROXIES,
    PROXY_WORKERS,
    Load,
    PoolChanger,
    netem_available,
    stored_table,
)
from tests.e2e.cluster.conftest import Cluster
from tests.support import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def changer(cluster: Cluster):
    started = PoolChanger(cluster.bed)
    try:
        yield started
    finally:
        started.close()


def figures(name: str, **values: object) -> None:
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in values.items()), flush=True)


def all_hold(cluster: Cluster, version: int) -> bool:
    return all((cluster.bed.proxy_version(p) or 0) >= version for p in PROXIES)


def test_every_app_is_served_by_both_proxies(cluster: Cluster):
    for domain in cluster.apps.values():
        backends = set()
        for proxy in PROXIES:
            reply = cluster.bed.via(proxy, "GET", "/", vhost=domain)
            assert reply.status == 200, (proxy, domain, reply.status, reply.body[:200])
            backends.add(reply.headers["x-backend"])
        assert len(backends) == 1, (domain, backends)


def test_the_redis_master_killed_under_load(cluster: Cluster, changer: PoolChanger):
    bed = cluster.bed
    domains = list(cluster.apps.values())
    loads = [Load(bed, proxy, domains) for proxy in PROXIES]
    with loads[0], loads[1]:
        wait_until(lambda: all(load.sent >= 20 for load in loads), 30, what="traffic flowing")
        old = bed.master_host()
        killed_at = time.monotonic()
        bed.kill(f"redis-{old}")
        # A pool change made during the fail-over: committed while the master is gone.
        during = changer.set_weight("b3", 2)
        new = wait_until(lambda: bed.master_host() != old and bed.master_host(), 30,
                         interval=0.05, what="a replica promoted")  # fmt: skip
        promoted_at = time.monotonic()
        wait_until(lambda: all_hold(cluster, during), max(0.1, promoted_at + 5 - time.monotonic()),
                   interval=0.05, what=f"version {during} on both proxies")  # fmt: skip
        converged_at = time.monotonic()
        # Celery keeps publishing: a change after the fail-over goes through the worker.
        after = changer.set_weight("b3", 1)
        wait_until(lambda: all_hold(cluster, after), 10, interval=0.05,
                   what=f"version {after} on both proxies")  # fmt: skip
        after_at = time.monotonic()
    for load in loads:
        assert load.failed == [], load.failed[:5]
    figures(
        "redis master killed",
        sent=sum(load.sent for load in loads),
        failed=sum(len(load.failed) for load in loads),
        master=f"{old}->{new}",
        promotion_s=round(promoted_at - killed_at, 2),
        change_during_failover_converged_after_promotion_s=round(converged_at - promoted_at, 2),
        change_after_failover_s=round(after_at - converged_at, 2),
    )
    # The old master comes back as a replica, so that the next faults have a group again.
    bed.start_redis(old, bed.master())
    wait_until(bed.redis_settled, 30, interval=0.2, what="the group whole again")


def test_a_proxy_cut_off_from_redis_for_30_seconds(cluster: Cluster, changer: PoolChanger):
    bed = cluster.bed
    domains = list(cluster.apps.values())
    held = bed.proxy_version("p1")
    with Load(bed, "p1", domains) as load:
        bed.link("p1", "redis", up=False)
        cut_at = time.monotonic()
        try:
            version = changer.set_weight("b3", 2)
            wait_until(lambda: (bed.proxy_version("p2") or 0) >= version, 10, interval=0.05,
                       what="the change on the proxy that still reaches Redis")  # fmt: skip
            # The cut lasts 30 s; all the while p1 serves with the table it holds.
            while time.monotonic() < cut_at + 30:
                assert bed.proxy_version("p1") == held
                time.sleep(0.5)
        finally:
            bed.link("p1", "redis", up=True)
        up_at = time.monotonic()
        wait_until(lambda: (bed.proxy_version("p1") or 0) >= version, 5, interval=0.05,
                   what=f"p1 taking version {version} after the link came back")  # fmt: skip
        converged_at = time.monotonic()
    assert load.failed == [], load.failed[:5]
    figures("proxy cut off from Redis", sent=load.sent, failed=len(load.failed),
            cut_s=round(up_at - cut_at, 1),
            converged_after_link_up_s=round(converged_at - up_at, 2))  # fmt: skip


def first_served(bed, proxy: str, domain: str, backend: str) -> float:
    """Ask ``proxy`` for ``domain`` until ``backend`` answers (at most 10 s); when it did."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            reply = bed.via(proxy, "GET", "/", vhost=domain, timeout=5)
            if reply.status == 200 and reply.headers.get("x-backend") == backend:
                return time.monotonic()
    raise TimeoutError(f"{proxy} never served {domain} from {backend}")


def test_a_node_host_cut_off(cluster: Cluster):
    bed = cluster.bed
    table = stored_table(bed)
    domains = list(cluster.apps.values())
    counts = {b.name: 0 for b in table.backends}
    for domain in domains:
        counts[table.backend_for(domain).name] += 1
    victim = max(counts, key=counts.get)
    moved = [d for d in domains if table.backend_for(d).name == victim]
    expect = {d: next(b.name for b in table.ranking(d) if b.name != victim) for d in moved}
    owners = {domain: user for user, domain in cluster.apps.items()}
    loads = [Load(bed, proxy, domains) for proxy in PROXIES]
    request_ids: list[str] = []
    with loads[0], loads[1]:
        wait_until(lambda: all(load.sent >= 20 for load in loads), 30, what="traffic flowing")
        bed.link(victim, "back", up=False)
        bed.link(victim, "redis", up=False)
        cut_at = time.monotonic()
        try:
            # Every app of the lost node, through each proxy, asked at once: when is it first
            # served by its next-ranked node?
            with concurrent.futures.ThreadPoolExecutor(len(PROXIES) * len(moved)) as pool:
                asked = [pool.submit(first_served, bed, p, d, expect[d]) for p in PROXIES
                         for d in moved]  # fmt: skip
                done, pending = concurrent.futures.wait(asked, timeout=2)
                assert not pending, f"{len(pending)} of {victim}'s apps not moved within 2 s"
            moved_at = max(future.result() for future in done)
            # Reloads follow the traffic, through either proxy; each POST is sent once.
            for proxy in PROXIES:
                for domain in moved:
                    user = owners[domain]
                    request_id = uuid.uuid4().hex
                    request_ids.append(request_id)
                    reply = bed.via(
                        proxy, "POST", f"/api/v0/user/{user}/webapps/{domain}/reload/",
                        vhost=cluster.panel_host, timeout=30,
                        headers={"Authorization": f"Token {cluster.tokens[user]}",
                                 "X-Request-ID": request_id},
                    )  # fmt: skip
                    assert reply.status == 200, (proxy, domain, reply.status, reply.body[:300])
                    assert reply.json()["backend"] == expect[domain]
        finally:
            bed.link(victim, "back", up=True)
            bed.link(victim, "redis", up=True)
        back_at = time.monotonic()

        def returned() -> bool:
            return all(
                bed.via(p, "GET", "/", vhost=d, timeout=10).headers.get("x-backend") == victim
                for p in PROXIES
                for d in moved
            )

        wait_until(returned, 30, interval=0.1, what=f"{victim}'s apps back on it")
        returned_at = time.monotonic()
    for load in loads:
        assert len(load.failed) <= PROXY_WORKERS, load.failed
        # Between the cut and the link coming back, none of its apps was served by it.
        for domain in moved:
            served = {b for t, b in load.served[domain] if cut_at < t < back_at}
            assert served <= {expect[domain]}, (load.proxy, domain, served)
    counted = bed.run_python(
        "import json\nfrom webapps.models import ReloadEvent\n"
        f"ids = {request_ids!r}\n"
        "print(json.dumps({i: ReloadEvent.objects.filter(request_id=i).count() for i in ids}))"
    ).splitlines()[-1]
    duplicated = {k: v for k, v in json.loads(counted).items() if v != 1}
    assert duplicated == {}, duplicated
    figures(
        "node host cut off",
        node=victim,
        apps_moved=len(moved),
        sent=sum(load.sent for load in loads),
        failed=sum(len(load.failed) for load in loads),
        failed_per_proxy=[len(load.failed) for load in loads],
        moved_after_cut_s=round(moved_at - cut_at, 2),
        reloads=len(request_ids),
        duplicated_posts=len(duplicated),
        back_after_link_up_s=round(returned_at - back_at, 2),
    )


def test_loss_and_latency_on_the_redis_link(cluster: Cluster, changer: PoolChanger):
    bed = cluster.bed
    applied = []
    for proxy in PROXIES:
        applied = bed.lossy(proxy, "redis", loss_percent=5, delay_ms=200)
    seen: dict[str, list[int]] = {p: [] for p in PROXIES}
    took = []
    try:
        for weight in (2, 3, 1, 2, 1):
            started = time.monotonic()
            version = changer.set_weight("b3", weight)

            def arrived(v: int = version) -> bool:
                for proxy in PROXIES:
                    held = bed.proxy_version(proxy) or 0
                    if not seen[proxy] or seen[proxy][-1] != held:
                        seen[proxy].append(held)
                return all(seen[p][-1] >= v for p in PROXIES)

            wait_until(arrived, 20, interval=0.05, what=f"version {version} under loss")
            took.append(round(time.monotonic() - started, 2))
    finally:
        for proxy in PROXIES:
            bed.clear_lossy(proxy, "redis")
    for proxy in PROXIES:
        assert seen[proxy] == sorted(seen[proxy]), (proxy, seen[proxy])
    figures(
        "Redis link with " + " and ".join(applied),
        netem=netem_available(),
        changes=len(took),
        seconds_each=took,
        versions_seen=seen,
    )
