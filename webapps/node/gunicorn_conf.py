"""gunicorn settings the node gives every app it runs (``gunicorn --config <this file>``).

It runs inside the app's own Python, perhaps a virtualenv with another gunicorn, so it uses the
standard library only. gunicorn ignores names it does not know, so newer settings are safe.
"""

import os

# gunicorn >= 24 opens a control socket under $HOME by default; apps of one owner would share it.
control_socket_disable = True

# The app's socket is born 0700 in its own 0700 directory: only the app and the node reach it.
umask = 0o077

# Forwarded-header handling pinned off: gunicorn trusts every unix-socket peer, so by default a
# client's SCRIPT_NAME or PATH_INFO header (passed on by a proxy) would rewrite the WSGI
# environment. The node's proxy is the only peer and says everything gunicorn needs in plain
# headers; the one scheme header believed is the X-Forwarded-Proto the proxies write themselves.
forwarded_allow_ips = ""
forwarder_headers = ""
header_map = "drop"
proxy_protocol = False
proxy_allow_ips = ""
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}


def post_worker_init(worker):
    """Tell the node that this worker has imported the app and is about to serve.

    The node counts these lines to know when a start or a reload has fresh workers answering.
    """
    fd = os.environ.get("HOSTING_NODE_READY_FD")
    if fd:
        os.write(int(fd), b"%d\n" % os.getpid())
