"""Faults on the several-host bed (bed.py), each with its figures printed: requests sent and
failed, and the time the platform took to converge. Deadlines are the issue's bounds, as poll
deadlines; the tests run in file order on one bed and leave it whole for the next."""

from __future__ import annotations

import pytest

from tests.e2e.cluster.bed import PROXIES
from tests.e2e.cluster.conftest import Cluster

pytestmark = pytest.mark.e2e


def test_every_app_is_served_by_both_proxies(cluster: Cluster):
    for domain in cluster.apps.values():
        backends = set()
        for proxy in PROXIES:
            reply = cluster.bed.via(proxy, "GET", "/", vhost=domain)
            assert reply.status == 200, (proxy, domain, reply.status, reply.body[:200])
            backends.add(reply.headers["x-backend"])
        assert len(backends) == 1, (domain, backends)
