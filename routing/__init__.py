"""Routing: the pure core (canonical keys, route table) and the Django app for the pool."""
