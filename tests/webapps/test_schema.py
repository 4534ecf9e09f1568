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


def _schema(client):
    return client.get("/api/schema/", HTTP_ACCEPT="application/json").json()


def test_every_operation_lists_its_error_answers_with_their_bodies(owner_api):
    paths = _schema(owner_api)["paths"]
    detail = paths["/api/v0/user/{username}/webapps/{domain}/"]
    assert set(detail["patch"]["responses"]) >= {"200", "400", "401", "403", "404", "405", "415"}
    reload = paths["/api/v0/user/{username}/webapps/{domain}/reload/"]["post"]["responses"]
    assert set(reload) >= {"200", "401", "403", "404", "429", "502"}
    error = reload["429"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}
    assert set(paths["/api/v0/user/{username}/webapps/{domain}/disable/"]["post"]["responses"]) >= {
        "200",
        "404",
    }


def test_error_bodies_have_a_non_blank_detail_and_nothing_else(owner_api):
    schemas = _schema(owner_api)["components"]["schemas"]
    assert schemas["Error"]["additionalProperties"] is False
    assert schemas["Error"]["properties"]["detail"]["minLength"] == 1
    assert schemas["WebApp"]["additionalProperties"] is False
    assert "password_protection_password" not in schemas["WebApp"]["properties"]


def test_removing_a_backend_is_documented_as_200_with_its_change(owner_api):
    delete = _schema(owner_api)["paths"]["/api/v0/backends/{name}/"]["delete"]["responses"]
    assert "204" not in delete
    assert delete["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PoolChange"
    }
