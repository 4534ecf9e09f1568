from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "panel.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from panel.accounts import checks, schema  # noqa: F401  (register checks and the scheme)
