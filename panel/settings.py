"""Settings for the panel, read from the environment (see docs/operations.md for the list).

Nothing here has a hidden default for production: DEBUG is off unless asked for, and a local
run gets a SECRET_KEY generated once into ``var/`` so that every node on this machine shares it.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from panel.env import (
    env_bool,
    env_file,
    env_int,
    env_list,
    env_pythons,
    env_redis_url,
    env_str,
    env_trusted_keys,
)
from routing.addresses import DEFAULT_TRUSTED_PROXIES
from routing.connect import kombu_broker
from webapps.node.pythons import parse_pythons

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var"))).resolve()


def _secret_key() -> str:
    """SECRET_KEY from the environment, or one generated once into var/ for local runs."""
    key = env_str("SECRET_KEY", "")
    if not key:
        path = VAR_DIR / "secret_key"
        if not path.exists():
            VAR_DIR.mkdir(parents=True, exist_ok=True)
            # Born 0600 in one step (O_EXCL: no window in which it is readable by others, and
            # two processes starting at once keep the first one's key).
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as stream:
                    stream.write(secrets.token_urlsafe(50))
        key = path.read_text().strip()
    if len(key) < 32:
        raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters long")
    return key


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)

# --- the hosting platform -----------------------------------------------------------------
PANEL_HOST = env_str("PANEL_HOST", "panel.localhost")
APPS_DOMAIN = env_str("APPS_DOMAIN", "apps.localhost")
HOME_ROOT = Path(env_str("HOME_ROOT", str(VAR_DIR / "home"))).resolve()
REDIS_URL = env_redis_url("REDIS_URL", "redis://127.0.0.1:6390/0")
REDIS_PREFIX = env_str("REDIS_PREFIX", "hosting:")
# Names users may never claim as an app domain (besides PANEL_HOST itself).
RESERVED_DOMAINS = env_list("RESERVED_DOMAINS", ["localhost", "www.localhost"])
# The node this panel process runs on (set by `manage.py runnode` for its panel worker).
NODE_NAME = env_str("NODE_NAME", "")
NODE_EXPOSE_NAME = env_bool("NODE_EXPOSE_NAME", True)
# --- tenant isolation (docs/security.md) -----------------------------------------------------
# Each user's numeric uid (and gid, the same number) comes from this range, allocated by the
# panel once and the same on every node. Keep it clear of the hosts' own users and subuid ranges.
OWNER_UID_MIN = env_int("OWNER_UID_MIN", 1_000_000, minimum=1000)
OWNER_UID_MAX = env_int("OWNER_UID_MAX", 1_999_999, minimum=1000)
# The panel's own system uid and gid on the nodes: it can read the database and the secret key,
# and no tenant has it.
PANEL_UID = env_int("PANEL_UID", 999_999, minimum=1)
PANEL_GID = env_int("PANEL_GID", PANEL_UID, minimum=1)
# A node that cannot isolate apps (not root, no bubblewrap) refuses to start unless told this.
NODE_APPS_SHARE_NODE_USER = env_bool("NODE_APPS_SHARE_NODE_USER", False)
NODE_APP_EGRESS = env_bool("NODE_APP_EGRESS", True)
NODE_EGRESS_POOL = env_str("NODE_EGRESS_POOL", "100.72.0.0/16")
# Networks sandboxes may never reach (the control plane's private networks; the node host itself
# is always out of reach).
NODE_EGRESS_DENY = env_list("NODE_EGRESS_DENY", [])
# Limits per owner (all of an owner's app processes on one node together).
NODE_OWNER_MEMORY_MB = env_int("NODE_OWNER_MEMORY_MB", 512, minimum=4)
NODE_OWNER_PIDS = env_int("NODE_OWNER_PIDS", 256, minimum=4)
NODE_OWNER_CPU_WEIGHT = env_int("NODE_OWNER_CPU_WEIGHT", 100, minimum=1)
# The most an owner may choose for an app's gunicorn (the Web tab and the API refuse more; the
# node holds any spec to them too): workers, threads per worker, and the worker timeout in
# seconds (a request may run this long before its visitor gets 504 and its worker is restarted).
NODE_MAX_WORKERS_PER_APP = env_int("NODE_MAX_WORKERS_PER_APP", 4, minimum=1)
NODE_MAX_THREADS_PER_APP = env_int("NODE_MAX_THREADS_PER_APP", 8, minimum=1)
NODE_MAX_TIMEOUT_PER_APP = env_int("NODE_MAX_TIMEOUT_PER_APP", 300, minimum=5)
# An app's worker timeout when its owner chose none (runnode --request-timeout).
NODE_REQUEST_TIMEOUT = env_int("NODE_REQUEST_TIMEOUT", 60, minimum=5)
# User apps a node runs at once (runnode --max-running-apps; 0: no cap): a start past it stops
# the least recently used idle app first.
NODE_MAX_RUNNING_APPS = env_int("NODE_MAX_RUNNING_APPS", 50, minimum=0)
MAX_APPS_PER_USER = env_int("MAX_APPS_PER_USER", 20, minimum=1)
RELOAD_THROTTLE_PER_MINUTE = env_int("RELOAD_THROTTLE_PER_MINUTE", 40, minimum=1)
ROUTES_REPUBLISH_SECONDS = env_int("ROUTES_REPUBLISH_SECONDS", 30, minimum=1)
# Route tables are always signed (docs/routing.md, "Keys"): the publisher's private key file
# (empty: the machine's pair under VAR_DIR/keys/, made on first use) and the public keys a
# stored table must verify with (empty: the machine's; two while rotating).
ROUTES_SIGNING_KEY_FILE = env_file("ROUTES_SIGNING_KEY_FILE")
ROUTES_TRUSTED_KEYS = env_trusted_keys("ROUTES_TRUSTED_KEYS")
# The publisher writes the route table with its own Redis user (docs/operations.md, "Redis
# access control"); unset, it uses REDIS_URL.
ROUTES_REDIS_URL = env_redis_url("ROUTES_REDIS_URL", REDIS_URL)
# A node follows the route table with a reader's Redis user; unset, it uses REDIS_URL.
NODE_REDIS_URL = env_redis_url("NODE_REDIS_URL", REDIS_URL)
# How a reload is carried out: the node that hosts this panel process sets its own reloader
# (and the control socket it talks to); a panel outside any node reports that no node is here.
WEBAPPS_RELOADER = env_str("WEBAPPS_RELOADER", "webapps.reload.NoNodeReloader")
NODE_CONTROL_SOCKET = env_str("NODE_CONTROL_SOCKET", "")
# The Pythons a node runs apps with, "3.11=/usr/bin/python3.11,3.12=/opt/py/bin/python3.12";
# empty: the node's own and every python3.N on its PATH (webapps/node/pythons.py).
NODE_PYTHONS = env_pythons("NODE_PYTHONS")
# What apps get from the platform when their virtualenv names it (the Django and Flask
# templates): these distributions, as installed with the panel, copied by each node into
# PLATFORM_PACKAGES_DIR/platform-<hash>/site-packages (decision 0088).
PLATFORM_PACKAGES = env_list("PLATFORM_PACKAGES", ["Django", "Flask"])
PLATFORM_PACKAGES_DIR = Path(env_str("PLATFORM_PACKAGES_DIR", str(VAR_DIR / "packages"))).resolve()
# The Python versions the nodes have: the only ones an app may ask for (default: those of
# NODE_PYTHONS when it is set, else this one).
PYTHON_VERSIONS = env_list(
    "PYTHON_VERSIONS",
    list(parse_pythons(NODE_PYTHONS)) or [f"{sys.version_info[0]}.{sys.version_info[1]}"],
)

# --- HTTPS per domain (docs/operations.md, "Certificates") ---------------------------------
# The route-table signing key (ROUTES_SIGNING_KEY_FILE, above) also signs the proxies'
# certificate and challenge documents.
# The proxies' public X25519 key that certificate private keys are sealed to (x25519:... or a
# file); empty: the machine's pair under VAR_DIR/keys/ (made on first use).
TLS_KEYS_PUBLIC = env_str("TLS_KEYS_PUBLIC", "")
# Automatic certificates (ACME): the directory URL (empty: automatic HTTPS is off), a CA file
# to trust it by (a test CA such as pebble's), the account key (made once), a contact address.
ACME_DIRECTORY_URL = env_str("ACME_DIRECTORY_URL", "")
ACME_CA_BUNDLE = env_str("ACME_CA_BUNDLE", "")
ACME_ACCOUNT_KEY_FILE = Path(
    env_str("ACME_ACCOUNT_KEY_FILE", str(VAR_DIR / "keys" / "acme-account.key"))
)
ACME_EMAIL = env_str("ACME_EMAIL", "")
ACME_RENEW_DAYS_BEFORE = env_int("ACME_RENEW_DAYS_BEFORE", 30, minimum=0)
ACME_RETRY_SECONDS = env_int("ACME_RETRY_SECONDS", 600, minimum=1)
ACME_RETRY_MAX_SECONDS = env_int("ACME_RETRY_MAX_SECONDS", 86400, minimum=1)
ACME_ORDER_TIMEOUT = env_int("ACME_ORDER_TIMEOUT", 120, minimum=5)
ACME_RENEW_CONCURRENCY = env_int("ACME_RENEW_CONCURRENCY", 8, minimum=1)
ACME_RENEW_CHECK_SECONDS = env_int("ACME_RENEW_CHECK_SECONDS", 3600, minimum=1)
# Milliseconds between publishing a challenge answer and asking the ACME server to check it
# (the proxies take it from the change message within milliseconds).
ACME_CHALLENGE_SETTLE_MS = env_int("ACME_CHALLENGE_SETTLE_MS", 300, minimum=0)
# Every new app gets an automatic certificate when this is on (an operator's switch).
TLS_AUTO_FOR_NEW_APPS = env_bool("TLS_AUTO_FOR_NEW_APPS", False)

ALLOWED_HOSTS = [PANEL_HOST, *env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "testserver"])]
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# The front proxy terminates TLS and says so in X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = False
# Our own proxies (front proxy, nodes): X-Forwarded-For entries they add are believed, so the
# audit trail and sign-in lockouts see the client's address (panel/accounts/clientip.py).
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", list(DEFAULT_TRUSTED_PROXIES))
# The panel is served over HTTPS (the front proxy terminates TLS): its session and CSRF cookies
# are then Secure and carry the __Host- prefix, so no other host (an app under a neighbouring
# name) can set or shadow them, and they never travel over plain HTTP.
PANEL_HTTPS = env_bool("PANEL_HTTPS", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", PANEL_HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", PANEL_HTTPS)
if PANEL_HTTPS:
    if not (SESSION_COOKIE_SECURE and CSRF_COOKIE_SECURE):
        raise ImproperlyConfigured(
            "PANEL_HTTPS=1 needs SESSION_COOKIE_SECURE and CSRF_COOKIE_SECURE"
        )
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
    # __Host- cookies have Path=/ and no Domain (Django's defaults, stated here)
    SESSION_COOKIE_PATH = CSRF_COOKIE_PATH = "/"
    SESSION_COOKIE_DOMAIN = CSRF_COOKIE_DOMAIN = None
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
# Off by default because they bind every subdomain of PANEL_HOST (and, with preload, browsers'
# built-in lists) to HTTPS; production turns them on (docs/panel.md, "Production settings").
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "axes",
    # Dependencies point one way: routing.pool -> webapps -> panel.accounts.
    "panel.accounts.apps.AccountsConfig",
    "webapps.apps.WebappsConfig",
    "routing.pool.apps.RoutingConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "panel.urls"
WSGI_APPLICATION = "panel.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "panel" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Many processes share the SQLite file in a local run (every node's panel, Celery): WAL lets
    # readers run beside one writer, IMMEDIATE takes the write lock up front instead of failing
    # on upgrade, and the timeout makes a writer wait for the lock rather than error at once.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
if env_str("DATABASE_TEST_NAME", ""):
    DATABASES["default"]["TEST"] = {"NAME": env_str("DATABASE_TEST_NAME", "")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        # Django's Redis cache, its clients made by routing.connect (any Redis URL, Sentinel
        # included; 2 s to connect and read).
        "BACKEND": "panel.cache.ConnectedRedisCache",
        "LOCATION": [REDIS_URL],
        "KEY_PREFIX": REDIS_PREFIX + "cache",
        "OPTIONS": {"timeout": 2},
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.db"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# Serve the apps' static files straight from their directories too, so a node's panel works
# without a collectstatic step (files collected into STATIC_ROOT still take precedence).
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- sign-in brute-force protection (django-axes) ------------------------------------------
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = 0.25  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "panel.accounts.clientip.client_ip"
# Back-off per username across addresses (panel.accounts.backoff): failures counted past this
# many (each address counting at most AXES_FAILURE_LIMIT) make the next attempt wait 1 s,
# doubling, at most SIGNIN_BACKOFF_MAX seconds.
SIGNIN_BACKOFF_FREE = env_int("SIGNIN_BACKOFF_FREE", 2 * AXES_FAILURE_LIMIT, minimum=0)
SIGNIN_BACKOFF_MAX = env_int("SIGNIN_BACKOFF_MAX", 60, minimum=1)

# --- API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Token first, so an unauthenticated call gets 401 with WWW-Authenticate: Token.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "panel.accounts.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EXCEPTION_HANDLER": "panel.accounts.api_errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "panel.accounts.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Hosting panel API",
    "DESCRIPTION": "Web apps, reloads, backends and routing. See docs/api.md.",
    "VERSION": "0",
    "SERVE_INCLUDE_SCHEMA": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "panel.accounts.schema.describe_errors",
    ],
}

# --- Celery ------------------------------------------------------------------------------
# A sentinel:// REDIS_URL becomes kombu's own form (one sentinel:// per sentinel) and the
# master's name in the transport options (routing.connect.kombu_broker); redis:// stays as is.
CELERY_BROKER_URL, _BROKER_SENTINEL_OPTIONS = kombu_broker(REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    # Every broker key and channel under <prefix>celery:, so that the panel's and Celery's
    # Redis users can be limited to them (docs/operations.md, "Redis access control").
    "global_keyprefix": REDIS_PREFIX + "celery:",
    **_BROKER_SENTINEL_OPTIONS,
}
# The same for a result backend, should one be configured (none is: tasks ignore results).
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = dict(_BROKER_SENTINEL_OPTIONS)
# Anti-entropy: republish the route table every period; a run older than one period is dropped
# (a newer one reads the same database).
CELERY_BEAT_SCHEDULE = {
    "republish-routes": {
        "task": "routing.publish_routes",
        "schedule": float(ROUTES_REPUBLISH_SECONDS),
        "options": {"expires": float(ROUTES_REPUBLISH_SECONDS)},
    },
    "republish-certificates": {
        "task": "webapps.publish_certificates",
        "schedule": float(ROUTES_REPUBLISH_SECONDS),
        "options": {"expires": float(ROUTES_REPUBLISH_SECONDS)},
    },
    "renew-certificates": {
        "task": "webapps.renew_certificates",
        "schedule": float(ACME_RENEW_CHECK_SECONDS),
        "options": {"expires": float(ACME_RENEW_CHECK_SECONDS)},
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
