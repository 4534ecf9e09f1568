"""Staff API for the backend pool and the route table (mounted under /api/v0/)."""

urlpatterns: list = []
