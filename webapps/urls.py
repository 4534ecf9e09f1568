"""URLs of the Web tab and API v0."""

urlpatterns: list = []
