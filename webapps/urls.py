"""URLs of the Web tab and API v0 (users' web apps). The reload paths are the ones
``routing.reload_path`` generates and ``routing.route_key`` understands."""

from django.urls import include, path

from webapps import api, views

api_patterns = [
    path("webapps/", api.WebAppListView.as_view(), name="api-webapp-list"),
    path("webapps/<str:domain>/", api.WebAppDetailView.as_view(), name="api-webapp-detail"),
    path("webapps/<str:domain>/reload/", api.WebAppReloadView.as_view(), name="api-webapp-reload"),
]

web_patterns = [
    path("webapps/", views.webapp_list, name="webapp-list"),
    path("webapps/<str:domain>/", views.webapp_detail, name="webapp-detail"),
    path("webapps/<str:domain>/reload/", views.webapp_reload, name="webapp-reload"),
    path("webapps/<str:domain>/delete/", views.webapp_delete, name="webapp-delete"),
]

urlpatterns = [
    path("api/v0/user/<str:username>/", include(api_patterns)),
    path("api/docs/", views.api_docs, name="api-docs"),
    path("user/<str:username>/", include(web_patterns)),
    path("", views.home, name="home"),
]
