from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "panel.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib import admin

        from panel.accounts import checks, schema  # noqa: F401  (register checks and the scheme)
        from panel.accounts.forms import AdminSignInForm

        admin.site.login_form = AdminSignInForm  # the admin's sign-in backs off the same way
