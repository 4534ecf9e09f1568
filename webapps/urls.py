"""URLs of the Web tab and API v0 (users' web apps). The reload paths are the ones
``routing.reload_path`` generates and ``routing.route_key`` understands."""

from django.urls import include, path, re_path

from webapps import api, views

api_patterns = [
    path("webapps/", api.WebAppListView.as_view(), name="api-webapp-list"),
    path("webapps/<str:domain>/", api.WebAppDetailView.as_view(), name="api-webapp-detail"),
    path("webapps/<str:domain>/reload/", api.WebAppReloadView.as_view(), name="api-webapp-reload"),
    path(
        "webapps/<str:domain>/static_files/",
        api.StaticFilesListView.as_view(),
        name="api-static-list",
    ),
    path(
        "webapps/<str:domain>/static_files/<int:id>/",
        api.StaticFilesDetailView.as_view(),
        name="api-static-detail",
    ),
    path("files/tree/", api.FilesTreeView.as_view(), name="api-files-tree"),
    re_path(
        r"^files/path/var/log/(?P<name>[^/]+)/?$", api.LogFileView.as_view(), name="api-log-file"
    ),
]

web_patterns = [
    path("webapps/", views.webapp_list, name="webapp-list"),
    path("webapps/<str:domain>/", views.webapp_detail, name="webapp-detail"),
    path("webapps/<str:domain>/reload/", views.webapp_reload, name="webapp-reload"),
    path("webapps/<str:domain>/delete/", views.webapp_delete, name="webapp-delete"),
    path("webapps/<str:domain>/static_files/", views.static_files, name="webapp-static"),
    path("webapps/<str:domain>/logs/<str:name>/", views.webapp_log, name="webapp-log"),
    path(
        "webapps/<str:domain>/logs/<str:name>/download/",
        views.webapp_log_download,
        name="webapp-log-download",
    ),
]

urlpatterns = [
    path("api/v0/user/<str:username>/", include(api_patterns)),
    path("api/docs/", views.api_docs, name="api-docs"),
    path("user/<str:username>/", include(web_patterns)),
    path("", views.home, name="home"),
]
