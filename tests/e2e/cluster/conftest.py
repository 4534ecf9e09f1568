"""The several-host bed, built once for the cluster tests and torn down after them (and at
start, should an interrupted run have left one): see bed.py. ``cluster_bed`` is the same for
bench/soak.py."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.tls import make_local_ca
from tests.e2e.cluster.bed import NODE_PORT, NODES, PROXIES, Bed, address
from tests.support import wait_until

USERS = 12
PASSWORD = "bed-pass-Xq7!v"
SETUP = """
import json
from django.contrib.auth.hashers import make_password
from panel.accounts.actions import do_create_token
from panel.accounts.models import User
from panel.accounts.origin import Origin
from routing.pool.actions import do_add_backend

spec = json.loads({spec!r})
origin = Origin(via="cli")
operator = User.objects.create_user("Operator", password=spec["password"], is_staff=True)
out = {{"operator": do_create_token(operator, actor=operator, origin=origin)[1], "users": {{}}}}
for name, addr in spec["nodes"]:
    do_add_backend(name, addr, actor=operator, origin=origin, state="active")
hashed = make_password(spec["password"])
for name in spec["users"]:
    user = User.objects.create(username=name, password=hashed)
    out["users"][name] = do_create_token(user, actor=user, origin=origin)[1]
print(json.dumps(out))
"""


@dataclass
class Cluster:
    bed: Bed
    operator: str
    tokens: dict[str, str]  # username -> API token
    apps: dict[str, str]  # username -> canonical domain

    @property
    def panel_host(self) -> str:
        assert self.bed.config is not None
        return self.bed.config.panel_host


ROOT_NEEDED = "the several-host bed needs root (network namespaces, veth pairs)"


def preflight() -> None:
    if os.geteuid() != 0:
        raise RuntimeError(ROOT_NEEDED)
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"the cluster bed needs {tool} (make sandbox-tools)")


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    # Package scope: the bed is removed once its tests are done, not kept running (ten hosts'
    # processes) under the rest of the suite.
    # Without root there is no bed to build (CI runs as root); as root a missing tool is an
    # error (preflight), never a skip.
    if os.geteuid() != 0:
        pytest.skip(ROOT_NEEDED)
    # Not under pytest's basetemp: pytest makes that 0700 again at every session's start, and
    # the panel runs on the nodes as a uid of its own that must reach the database in var_dir.
    var_dir = Path(tempfile.mkdtemp(prefix="hbed-", dir="/tmp"))
    try:
        with cluster_bed(var_dir) as built:
            yield built
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


@contextlib.contextmanager
def cluster_bed(var_dir: Path) -> Iterator[Cluster]:
    """Build the bed in ``var_dir``, seed it (an operator, three active nodes, USERS users with
    one app each), yield it, and remove it whatever happens."""
    preflight()
    Bed.destroy()  # a bed an interrupted run left behind
    bed = Bed(var_dir)
    try:
        bed.build_network()
        bed.start_redis_group()
        config = bed.config = bed.platform_config()
        make_local_ca(config.tls_dir, config.panel_host, config.apps_domain)
        bed.manage("migrate", "--noinput")
        bed.manage("collectstatic", "--noinput")
        users = [f"{('IronHand', 'JoeButy', 'McFly')[i % 3]}{i:02d}" for i in range(USERS)]
        spec = {
            "password": PASSWORD,
            "nodes": [[n, f"{address(n, 'back')}:{NODE_PORT}"] for n in NODES],
            "users": users,
        }
        out = json.loads(bed.run_python(SETUP.format(spec=json.dumps(spec))).splitlines()[-1])
        bed.start_platform()
        for proxy in PROXIES:
            wait_until(lambda p=proxy: bed.proxy_version(p), 90, interval=0.2,
                       what=f"proxy {proxy} holding a table")  # fmt: skip
        apps = {}
        for index, (username, token) in enumerate(out["users"].items()):
            domain = f"Shop{index:02d}.{username}.Example.TEST"
            reply = wait_until(
                lambda u=username, t=token, d=domain: _create_app(bed, config.panel_host, u, t, d),
                60, interval=0.5, what=f"creating {domain}",
            )  # fmt: skip
            apps[username] = reply
        yield Cluster(bed, out["operator"], out["users"], apps)
    finally:
        bed.stop_all()
        Bed.destroy()


def _create_app(bed: Bed, panel_host: str, username: str, token: str, domain: str) -> str | None:
    reply = bed.via(
        "p1", "POST", f"/api/v0/user/{username}/webapps/", vhost=panel_host,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json",
                 "Accept": "application/json"},
        body=json.dumps({"domain_name": domain}).encode(), timeout=30,
    )  # fmt: skip
    if reply.status == 201:
        return reply.json()["domain_name"]
    if reply.status == 400 and b"already" in reply.body:
        return domain.lower()
    return None
