"""Hosting apps on a backend node: the app supervisor, the control socket, the panel's reloader.

See docs/node.md.
"""
