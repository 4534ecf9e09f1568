"""URLs of the Web tab and API v0 (users' web apps). The reload paths are the ones
``routing.reload_path`` generates and ``routing.route_key`` understands: a reload's trailing
slash is optional on both sides, and a username or domain segment is never empty, ``.``, ``..``
or holds a ``;`` (the router routes such paths by the panel host, so the panel must not serve
them as reloads). tests/webapps/test_reload_urls.py holds the two sets equal."""

from django.urls import include, path, re_path, register_converter
from drf_spectacular.utils import extend_schema

from webapps import api, views


class SegmentConverter:
    """One path segment as the router reads it: no ``/``, no ``;``, not ``.`` or ``..``.

    Used where a segment is followed by ``/`` (the lookahead needs it to end a dot segment).
    """

    regex = r"(?!\.\.?/)[^/;]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(SegmentConverter, "segment")


@extend_schema(exclude=True)  # the schema lists the reload once, with its slash
class WebAppReloadNoSlashView(api.WebAppReloadView):
    pass


api_patterns = [
    path("webapps/", api.WebAppListView.as_view(), name="api-webapp-list"),
    path("webapps/<segment:domain>/", api.WebAppDetailView.as_view(), name="api-webapp-detail"),
    path(
        "webapps/<segment:domain>/reload/",
        api.WebAppReloadView.as_view(),
        name="api-webapp-reload",
    ),
    # The same reload without its trailing slash: served, not redirected (a redirected POST
    # arrives as a GET, and the reload would silently not happen).
    path("webapps/<segment:domain>/reload", WebAppReloadNoSlashView.as_view()),
    path("webapps/<segment:domain>/ssl/", api.WebAppSSLView.as_view(), name="api-webapp-ssl"),
    path(
        "webapps/<segment:domain>/static_files/",
        api.StaticFilesListView.as_view(),
        name="api-static-list",
    ),
    path(
        "webapps/<segment:domain>/static_files/<int:id>/",
        api.StaticFilesDetailView.as_view(),
        name="api-static-detail",
    ),
    path("files/tree/", api.FilesTreeView.as_view(), name="api-files-tree"),
    re_path(
        r"^files/path/var/log/(?P<name>[^/]+)/?$", api.LogFileView.as_view(), name="api-log-file"
    ),
    path(
        "webapps/<segment:domain>/enable/",
        api.WebAppEnableView.as_view(),
        name="api-webapp-enable",
    ),
    path(
        "webapps/<segment:domain>/disable/",
        api.WebAppDisableView.as_view(),
        name="api-webapp-disable",
    ),
]

web_patterns = [
    path("webapps/", views.webapp_list, name="webapp-list"),
    path("webapps/<segment:domain>/", views.webapp_detail, name="webapp-detail"),
    path("webapps/<segment:domain>/reload/", views.webapp_reload, name="webapp-reload"),
    path("webapps/<segment:domain>/reload", views.webapp_reload),
    path("webapps/<segment:domain>/delete/", views.webapp_delete, name="webapp-delete"),
    path("webapps/<segment:domain>/ssl/", views.webapp_ssl, name="webapp-ssl"),
    path("webapps/<segment:domain>/static_files/", views.static_files, name="webapp-static"),
    path("webapps/<segment:domain>/logs/<str:name>/", views.webapp_log, name="webapp-log"),
    path(
        "webapps/<segment:domain>/logs/<str:name>/download/",
        views.webapp_log_download,
        name="webapp-log-download",
    ),
    path("webapps/<segment:domain>/enable/", views.webapp_enable, name="webapp-enable"),
    path("webapps/<segment:domain>/disable/", views.webapp_disable, name="webapp-disable"),
    path("webapps/<segment:domain>/protection/", views.webapp_protection, name="webapp-protection"),
    path("webapps/<segment:domain>/server/", views.webapp_server, name="webapp-server"),
]

urlpatterns = [
    path("api/v0/user/<segment:username>/", include(api_patterns)),
    path("api/docs/", views.api_docs, name="api-docs"),
    path("user/<segment:username>/", include(web_patterns)),
    path("", views.home, name="home"),
]
