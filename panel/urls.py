"""Root URLs: admin, the Web tab, the API and its schema."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("webapps.urls")),
]
