from django.apps import AppConfig


class WebappsConfig(AppConfig):
    name = "webapps"
    verbose_name = "Web apps"

    def ready(self) -> None:
        from webapps import checks  # noqa: F401  (register the checks)
