"""A pool-change driver for tests that share a database with a Celery worker subprocess.

Run as ``python -m tests.pool.driver`` with the stack's environment (DATABASE_URL, REDIS_URL,
...). It sets Django up once, then reads one JSON request per line on stdin and answers one JSON
line on stdout, so a test makes many committed changes without paying Django's start-up each
time. Requests: ``{"action": "<do_* name>", "args": [...], "kwargs": {...}}`` (actor None, via
CLI), ``{"table": true}`` (the committed table as JSON) or ``{"enqueue": [args], "task_id": id}``.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.settings")
    import django

    django.setup()
    from routing import actions, pool, tasks
    from webapps.actions import Origin
    from webapps.models import Via

    origin = Origin(via=Via.CLI)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if "action" in request:
                func = getattr(actions, request["action"])
                result = func(None, origin, *request.get("args", []), **request.get("kwargs", {}))
                version = result if isinstance(result, int) else result.version
                answer = {"ok": True, "version": version}
            elif "table" in request:
                answer = {"ok": True, "table": pool.current_table().to_json()}
            elif "enqueue" in request:
                task = tasks.publish_routes
                task.apply_async(request["enqueue"], task_id=request.get("task_id"), retry=False)
                answer = {"ok": True}
            else:
                answer = {"ok": False, "error": f"unknown request {request!r}"}
        except actions.PoolError as exc:
            answer = {"ok": False, "error": exc.message}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
