"""Benchmark: what the sandbox launcher adds to an app's start, beside bwrap run by hand.

    .venv/bin/python bench/launcher_bench.py [--runs 20]

As root, where the node can sandbox. Each run starts ``/bin/true`` as an unprivileged uid in a
sandbox three ways, interleaved (the order reversed every other run):

- ``bwrap direct``: the peer. bwrap (and setpriv) with the same options, started by this
  process: the namespaces, mounts and credentials alone;
- ``launcher``: what the node runs per app process (``sandbox.launch``: the launcher's
  interpreter, its imports, bwrap, setpriv; cgroups are not joined here);
- ``launcher + egress``: the same with the veth pair attached.

It prints the median and minimum wall time of each and the launcher's cost over the peer.
Bounded: a few seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webapps.node import sandbox

UID = 1_500_003


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, cwd="/", capture_output=True, timeout=30)
    elapsed = (time.perf_counter() - started) * 1000
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr[-300:]!r}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="starts of each kind (default 20)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    isolation = sandbox.detect_isolation()
    if not isolation.available:
        print(f"launcher cost: not measured ({isolation.reason})")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="lb-", dir="/tmp"))
    try:
        home = workdir / "home"
        home.mkdir()
        os.chown(home, UID, UID)
        box = sandbox.SandboxSpec(uid=UID, gid=UID, home=str(home), socket_dir=str(home))
        kinds = {}
        bwrap = sandbox.bwrap_args(
            box, ["/bin/true"], {}, layout=sandbox.host_layout(), setpriv=isolation.setpriv
        )
        kinds["bwrap direct"] = ([isolation.bwrap, *bwrap], {})
        plain = sandbox.launch(box, ["/bin/true"], {}, isolation=isolation)
        kinds["launcher"] = (plain.argv, plain.env)
        if isolation.egress:
            boxed = sandbox.SandboxSpec(
                uid=UID, gid=UID, home=str(home), socket_dir=str(home), egress=True
            )
            egress = sandbox.launch(boxed, ["/bin/true"], {}, isolation=isolation)
            kinds["launcher + egress"] = (egress.argv, egress.env)
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        for run in range(args.runs):
            order = list(kinds) if run % 2 == 0 else list(reversed(kinds))
            for kind in order:
                times[kind].append(timed(*kinds[kind]))
        load = "/".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"sandbox start of /bin/true, {args.runs} runs each (load average {load}):")
        peer = statistics.median(times["bwrap direct"])
        for kind, values in times.items():
            median = statistics.median(values)
            extra = "" if kind == "bwrap direct" else f"   +{median - peer:5.1f} ms over bwrap"
            print(f"  {kind:18s} p50 {median:6.1f} ms  min {min(values):6.1f} ms{extra}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
