"""A private Sentinel group for tests: a master, a replica and three sentinels on loopback,
from the same layout as the demo's (scripts/sentinels.py). Tests may kill the master and watch
the sentinels promote the replica; ``cleanup`` stops everything the group started.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import redis

from scripts.sentinels import (
    MASTER_NAME,
    Instance,
    redis_argv,
    sentinel_argv,
    sentinel_conf,
    sentinel_url,
)
from tests.support import free_port, port_open, wait_until


class SentinelGroup:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.dir = Path(tempfile.mkdtemp(prefix="test-sentinel-"))
        self.redis = [Instance(host, free_port()), Instance(host, free_port())]
        self.sentinels = [Instance(host, free_port()) for _ in range(3)]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.first_master = self.redis[0]

    @property
    def url(self) -> str:
        return sentinel_url(self.sentinels)

    def _spawn(self, name: str, argv: list[str], cwd: Path) -> None:
        cwd.mkdir(parents=True, exist_ok=True)
        self.processes[name] = subprocess.Popen(
            argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def start_redis(self, index: int, replica_of: Instance | None) -> None:
        instance = self.redis[index]
        data = self.dir / f"redis{index}"
        data.mkdir(parents=True, exist_ok=True)
        self._spawn(f"redis{index}", redis_argv(instance, data, replica_of=replica_of), data)
        wait_until(lambda: port_open(instance.host, instance.port), 10, what=f"redis {instance}")

    def start(self, timeout: float = 20.0) -> SentinelGroup:
        self.start_redis(0, None)
        self.start_redis(1, self.redis[0])
        for index, sentinel in enumerate(self.sentinels):
            conf = sentinel_conf(self.dir / f"sentinel{index}" / "sentinel.conf", sentinel,
                                 self.redis[0])  # fmt: skip
            self._spawn(f"sentinel{index}", sentinel_argv(conf), conf.parent)
        wait_until(self.settled, timeout, interval=0.1, what="sentinels see 1 replica, 3 peers")
        return self

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        sentinel = self.sentinels[index]
        return redis.Redis(sentinel.host, sentinel.port, socket_timeout=2)

    def master(self) -> Instance:
        """The master as the first sentinel that answers names it."""
        for index in range(len(self.sentinels)):
            client = self.sentinel_client(index)
            try:
                host, port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                return Instance(str(host if isinstance(host, str) else host.decode()), int(port))
            except redis.RedisError:
                continue
            finally:
                client.close()
        raise RuntimeError("no sentinel answers")

    def settled(self) -> bool:
        """Every sentinel knows the master, one live replica and its two peers."""
        for index in range(len(self.sentinels)):
            client = self.sentinel_client(index)
            try:
                state = client.sentinel_master(MASTER_NAME)
                replicas = client.sentinel_slaves(MASTER_NAME)
            except redis.RedisError:
                return False
            finally:
                client.close()
            live = [r for r in replicas if not (r["is_sdown"] or r["is_odown"])]
            if state["num-other-sentinels"] < 2 or not live or state["is_sdown"]:
                return False
            if int(state["port"]) != self.master().port:
                return False
        return True

    def kill_master(self) -> Instance:
        """SIGKILL the current master (as a crashed machine); returns it."""
        master = self.master()
        index = self.redis.index(master)
        process = self.processes.pop(f"redis{index}")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        return master

    def restart(self, instance: Instance) -> None:
        """Start ``instance`` again, as a replica of the current master (where sentinels would
        send it anyway)."""
        self.start_redis(self.redis.index(instance), self.master())

    def cleanup(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.processes.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
