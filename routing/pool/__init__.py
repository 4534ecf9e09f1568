"""The backend pool: the Django app (label ``routing``) around the routing library.

Models (``Backend``, ``RouteVersion``, ``Revision``), the admin, the staff API, the pool's
actions with their previews, the publish task and the ``backends`` / ``routing`` commands. It
imports ``webapps`` and ``panel.accounts``; neither imports it. The label stays ``routing``, so
its tables (``routing_backend``, ...) and the Celery task name ``routing.publish_routes`` are
the ones every deployment and worker already knows.
"""
