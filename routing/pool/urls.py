"""Staff API for the backend pool and the route table (mounted under /api/v0/)."""

from django.urls import path

from routing.pool import api

urlpatterns = [
    path("backends/", api.BackendListView.as_view(), name="api-backend-list"),
    path("backends/<str:name>/", api.BackendDetailView.as_view(), name="api-backend-detail"),
    path("fleet/", api.FleetView.as_view(), name="api-fleet"),
    path("routing/", api.RoutingView.as_view(), name="api-routing"),
    path("routing/where/", api.WhereView.as_view(), name="api-routing-where"),
]
