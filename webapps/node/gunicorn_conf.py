"""gunicorn settings the node gives every app it runs (``gunicorn --config <this file>``).

It runs inside the app's own Python, perhaps a virtualenv with another gunicorn, so it uses the
standard library only. gunicorn ignores names it does not know, so newer settings are safe.
"""

import os

# gunicorn >= 24 opens a control socket under $HOME by default; apps of one owner would share it.
control_socket_disable = True


def post_worker_init(worker):
    """Tell the node that this worker has imported the app and is about to serve.

    The node counts these lines to know when a start or a reload has fresh workers answering.
    """
    fd = os.environ.get("HOSTING_NODE_READY_FD")
    if fd:
        os.write(int(fd), b"%d\n" % os.getpid())
