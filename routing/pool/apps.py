from django.apps import AppConfig


class RoutingConfig(AppConfig):
    # The label is the one the app had when it lived in routing/: table names, admin URLs and
    # the task name routing.publish_routes stay as they were.
    name = "routing.pool"
    label = "routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        from celery.signals import worker_ready

        from routing.pool import tasks

        worker_ready.connect(
            tasks.queue_publish_on_worker_start, dispatch_uid="routing.publish_on_worker_start"
        )
