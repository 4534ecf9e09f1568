from django.apps import AppConfig


class WebappsConfig(AppConfig):
    name = "webapps"
    verbose_name = "Web apps"

    def ready(self) -> None:
        from webapps import checks, schema  # noqa: F401  (register checks and the schema scheme)
