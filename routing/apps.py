from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        from celery.signals import worker_ready

        from routing import tasks

        worker_ready.connect(
            tasks.queue_publish_on_worker_start, dispatch_uid="routing.publish_on_worker_start"
        )
