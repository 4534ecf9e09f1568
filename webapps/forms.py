"""Web tab forms: they only carry text; the rules live in webapps.actions."""

from __future__ import annotations

from django import forms


class WebAppCreateForm(forms.Form):
    domain_name = forms.CharField(max_length=300, label="Domain")
    source_directory = forms.CharField(
        max_length=4096,
        required=False,
        help_text="Leave empty for a new directory named after the domain in your home, "
        "with a starter wsgi.py.",
    )
    wsgi_entry = forms.CharField(
        max_length=200, required=False, initial="wsgi:application", label="WSGI entry"
    )
    python_version = forms.CharField(max_length=16, required=False)
    virtualenv_path = forms.CharField(max_length=4096, required=False)


class WebAppUpdateForm(forms.Form):
    source_directory = forms.CharField(max_length=4096)
    wsgi_entry = forms.CharField(max_length=200, label="WSGI entry")
    python_version = forms.CharField(max_length=16, required=False)
    virtualenv_path = forms.CharField(max_length=4096, required=False)
    enabled = forms.BooleanField(required=False)


class StaticMappingForm(forms.Form):
    url = forms.CharField(max_length=255, label="URL", strip=False, initial="/static/")
    path = forms.CharField(max_length=4096, label="Directory")
    cache_control = forms.CharField(
        max_length=200, required=False, label="Cache-Control", help_text="Empty for the default."
    )
