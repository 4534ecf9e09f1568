"""Web tab forms: they only carry text; the rules live in webapps.actions."""

from __future__ import annotations

from django import forms

from webapps.actions import python_versions, server_defaults, server_limits


def _python_choices(current: str = "") -> list[tuple[str, str]]:
    offered = python_versions()
    if current and current not in offered:
        offered = [current, *offered]  # what is stored stays shown, so a save keeps it
    return [("", "the node's own"), *((v, f"Python {v}") for v in offered)]


TEMPLATE_CHOICES = [
    ("wsgi", "Plain WSGI (a wsgi.py to start from)"),
    ("flask", "Flask (a Flask app and its virtualenv)"),
    ("django", "Django (a project, its virtualenv and /static/)"),
    ("", "My own code (nothing written but a starter wsgi.py in a new directory)"),
]


class WebAppCreateForm(forms.Form):
    domain_name = forms.CharField(max_length=300, label="Domain")
    template = forms.ChoiceField(
        choices=TEMPLATE_CHOICES,
        initial="wsgi",
        required=False,
        label="Start from",
        widget=forms.RadioSelect,
        help_text="Written into the source directory (files already there are kept).",
    )
    source_directory = forms.CharField(
        max_length=4096,
        required=False,
        help_text="Leave empty for a new directory named after the domain in your home.",
    )
    wsgi_entry = forms.CharField(
        max_length=200,
        required=False,
        label="WSGI entry",
        help_text="Leave empty for the template's (wsgi:application; Django: "
        "mysite.wsgi:application).",
    )
    python_version = forms.ChoiceField(required=False, label="Python version")
    virtualenv_path = forms.CharField(
        max_length=4096,
        required=False,
        help_text="Leave empty for the template's own (Flask and Django: ~/.virtualenvs/<domain>).",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["python_version"].choices = _python_choices()


class WebAppUpdateForm(forms.Form):
    source_directory = forms.CharField(max_length=4096)
    wsgi_entry = forms.CharField(max_length=200, label="WSGI entry")
    python_version = forms.ChoiceField(required=False, label="Python version")
    virtualenv_path = forms.CharField(max_length=4096, required=False)
    enabled = forms.BooleanField(required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        current = (self.initial or {}).get("python_version", "")
        self.fields["python_version"].choices = _python_choices(current)


class AppServerForm(forms.Form):
    """Workers, threads and the worker timeout; empty is the platform's default. The limits
    shown are the operator's; ``webapps.actions`` enforces them."""

    workers = forms.IntegerField(required=False, min_value=1, label="Workers")
    threads = forms.IntegerField(required=False, min_value=1, label="Threads per worker")
    worker_timeout = forms.IntegerField(required=False, min_value=1, label="Worker timeout (s)")

    HELP = {
        "workers": "gunicorn worker processes.",
        "threads": "More than 1 runs gthread workers, which keep connections alive.",
        "worker_timeout": "A request may take this long before its visitor gets 504 and a "
        "sync worker is restarted.",
    }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        defaults = server_defaults()
        for name, (limit, _, least) in server_limits().items():
            field = self.fields[name]
            field.widget.attrs.update(min=least, max=limit, placeholder=defaults[name])
            field.help_text = (
                f"{self.HELP[name]} Empty: the default ({defaults[name]}); from {least} to {limit}."
            )


class PasswordProtectionForm(forms.Form):
    password_protection_enabled = forms.BooleanField(
        required=False, label="Protect with a password"
    )
    password_protection_username = forms.CharField(
        max_length=150, required=False, strip=False, label="User name"
    )
    password_protection_password = forms.CharField(
        max_length=256,
        required=False,
        strip=False,
        label="Password",
        widget=forms.PasswordInput,
        help_text="Leave empty to keep the current one. Stored hashed; nobody can read it back.",
    )

    def changes(self) -> dict:
        """The fields to change: an empty password keeps the stored one."""
        data = dict(self.cleaned_data)
        if not data["password_protection_password"]:
            del data["password_protection_password"]
        return data


class StaticMappingForm(forms.Form):
    url = forms.CharField(max_length=255, label="URL", strip=False, initial="/static/")
    path = forms.CharField(max_length=4096, label="Directory")
    cache_control = forms.CharField(
        max_length=200, required=False, label="Cache-Control", help_text="Empty for the default."
    )
