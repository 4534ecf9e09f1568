"""A backend node: the app supervisor, the HTTP side (the proxy's engine), the control socket.

A separate process that imports no Django and nothing else of ``webapps`` (only ``routing`` and
``proxy``): ``manage.py runnode`` reads the settings and passes them in as plain data, with the
app lookup as a plain callable. The panel's side (``webapps.node_client``,
``webapps.reload.NodeReloader``) lives with the panel. See docs/node.md.
"""
