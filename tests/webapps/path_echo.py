"""A WSGI app that answers with the ``PATH_INFO`` its server gave it (as latin-1 bytes, the
WSGI encoding), for tests that need the exact path a Django app behind gunicorn would see."""


def application(environ, start_response):
    body = environ["PATH_INFO"].encode("latin-1")
    start_response(
        "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))]
    )
    return [body]
