"""Root URLs: admin, the Web tab and API v0 (webapps), the staff API (routing), the schema."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/v0/", include("routing.urls")),
    path("", include("webapps.urls")),
]
