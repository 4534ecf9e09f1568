"""Two processes with different hash salts (PYTHONHASHSEED) route every key identically."""

import json
import os
import subprocess
import sys

from routing import ALGORITHM, Backend, RouteTable, canonical_host

PROBE = """
import json
from routing import ALGORITHM, Backend, RouteTable, canonical_host
backends = [Backend(f"node-{i}", f"10.0.0.{i}:80", 1 + i % 3) for i in range(1, 40)]
table = RouteTable(1, ALGORITHM, tuple(backends))
hosts = [f"App{i}.Example.COM." for i in range(2000)] + ["BÜCHER.example", "[::1]:8080"]
keys = [canonical_host(h) for h in hosts]
print(json.dumps({k: [b.name for b in table.ranking(k)][:3] for k in keys}))
"""


def run_probe(hash_seed: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout)


def test_processes_with_different_hash_seeds_agree():
    first, second = run_probe("1"), run_probe("4242")
    assert first == second
    backends = [Backend(f"node-{i}", f"10.0.0.{i}:80", 1 + i % 3) for i in range(1, 40)]
    table = RouteTable(1, ALGORITHM, tuple(backends))
    key = canonical_host("App7.Example.COM.")
    assert first[key] == [b.name for b in table.ranking(key)][:3]
