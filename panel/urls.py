"""Root URLs: admin, sign-in and the account page (panel.accounts), the Web tab and API v0
(webapps), the staff API (routing.pool), the schema."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/v0/", include("routing.pool.urls")),
    path("", include("panel.accounts.urls")),
    path("", include("webapps.urls")),
]

# Unmatched paths under /api/ answer JSON, as every API error does.
handler404 = "panel.accounts.api_errors.not_found"
