"""The OpenAPI schema describes API v0 and is served at /api/schema/."""

import pytest

pytestmark = pytest.mark.django_db


def test_it_serves_the_schema_with_the_webapp_paths(owner_api):
    response = owner_api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    assert "/api/v0/user/{username}/webapps/{domain}/reload/" in paths
    assert set(paths["/api/v0/user/{username}/webapps/{domain}/"]) >= {"get", "patch", "delete"}
    assert "tokenAuth" in schema["components"]["securitySchemes"]


def test_it_serves_a_reference_page_built_from_the_schema(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/api/v0/user/{username}/webapps/{domain}/reload/" in html
    assert "<code>domain_name</code>" in html
