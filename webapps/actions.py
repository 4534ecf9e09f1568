"""Every state change of web apps: one function each, used by the Web tab and the API.

Each ``do_*`` function has the one shape of ``panel.accounts.actions``:
``do_x(target..., *, actor, origin)``; it checks its input, changes the database inside one
``transaction.atomic(durable=True)`` and writes one ``AuditEvent`` in that same transaction.
Callers authorise first (see ``webapps.access``, which records denied attempts), call one
action, and render what it returns. Input problems raise ``ActionError`` naming the field;
nothing is half-done.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import IntegrityError, transaction

from panel.accounts.actions import ActionError, audit
from panel.accounts.models import AuditEvent, User
from panel.accounts.origin import Origin
from webapps import homes, starters, throttle, tls
from webapps.domains import DomainError, DomainPolicy, clean_domain
from webapps.models import Certificate, ReloadEvent, StaticFileMapping, WebApp
from webapps.node import pythons
from webapps.node.spec import DEFAULT_THREADS, DEFAULT_WORKERS, MIN_TIMEOUT
from webapps.node.static import InvalidMapping, check_cache_control, check_url_prefix
from webapps.reload import reload_app

# ASCII digits only: ``\d`` would take Arabic-Indic and other Unicode digits too.
PYTHON_VERSION_RE = re.compile(r"(?:python)?([0-9])\.?([0-9]{1,2})")
UPDATABLE_FIELDS = (
    "source_directory",
    "wsgi_entry",
    "python_version",
    "virtualenv_path",
    "enabled",
    "force_https",
    "password_protection_enabled",
    "password_protection_username",
    "password_protection_password",
    "workers",
    "threads",
    "worker_timeout",
)
BOOLEAN_FIELDS = ("enabled", "force_https", "password_protection_enabled")
MAX_PROTECTION_USERNAME = 150
MAX_PROTECTION_PASSWORD = 256


class ReloadThrottled(Exception):
    def __init__(self, retry_after: int, message: str = "") -> None:
        super().__init__(message or f"too many reloads; try again in {retry_after} s")
        self.retry_after = retry_after


class ReloadInFlight(ReloadThrottled):
    """Another reload of this user's is still running: one at a time per user (429)."""

    def __init__(self) -> None:
        super().__init__(1, "another reload of yours is still running; try again when it is done")


def domain_policy() -> DomainPolicy:
    return DomainPolicy.build(settings.PANEL_HOST, settings.APPS_DOMAIN, settings.RESERVED_DOMAINS)


# --- web apps --------------------------------------------------------------------------------


def python_versions() -> list[str]:
    """The Python versions the nodes have (``PYTHON_VERSIONS``), the only ones apps may ask for."""
    return list(settings.PYTHON_VERSIONS)


def _clean_python_version(raw: object) -> str:
    """ "" (the node's own Python) or one of ``python_versions()``, as ``3.11``."""
    if raw is None or raw == "":
        return ""
    offered = ", ".join(python_versions())
    match = PYTHON_VERSION_RE.fullmatch(raw.strip()) if isinstance(raw, str) else None
    if not match:
        raise ActionError(
            f"python_version {raw!r} is not a Python version like 3.11 or python311; "
            f"one of {offered}",
            "python_version",
        )
    version = f"{match[1]}.{match[2]}"
    if version not in python_versions():
        raise ActionError(
            f"Python {version} is not available here; one of {offered}", "python_version"
        )
    return version


def _clean_bool(raw: object, field: str) -> bool:
    if not isinstance(raw, bool):
        raise ActionError(f"{field} must be true or false", field)
    return raw


# The app server settings an owner chooses: field -> (the operator's limit, its setting's name,
# the least allowed). Null (or "" from a form) is the platform's default.
def server_limits() -> dict[str, tuple[int, str, int]]:
    return {
        "workers": (settings.NODE_MAX_WORKERS_PER_APP, "NODE_MAX_WORKERS_PER_APP", 1),
        "threads": (settings.NODE_MAX_THREADS_PER_APP, "NODE_MAX_THREADS_PER_APP", 1),
        "worker_timeout": (settings.NODE_MAX_TIMEOUT_PER_APP, "NODE_MAX_TIMEOUT_PER_APP",
                           MIN_TIMEOUT),
    }  # fmt: skip


SERVER_FIELDS = ("workers", "threads", "worker_timeout")


def server_defaults() -> dict[str, int]:
    """What an app runs with when its owner chose nothing."""
    return {
        "workers": DEFAULT_WORKERS,
        "threads": DEFAULT_THREADS,
        "worker_timeout": settings.NODE_REQUEST_TIMEOUT,
    }


def server_settings(webapp: WebApp) -> dict[str, int]:
    """What the app's gunicorn is set to: the owner's choice, else the default (the node still
    holds it to its own bounds)."""
    defaults = server_defaults()
    return {
        name: value if (value := getattr(webapp, name)) is not None else defaults[name]
        for name in SERVER_FIELDS
    }


def _clean_server_setting(raw: object, field: str) -> int | None:
    if raw is None or raw == "":
        return None
    limit, setting, least = server_limits()[field]
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ActionError(f"{field} must be a whole number from {least} to {limit}", field)
    if raw < least:
        raise ActionError(f"{field} must be at least {least}", field)
    if raw > limit:
        raise ActionError(
            f"{field} {raw} is more than this platform allows: at most {limit} ({setting})", field
        )
    return raw


def _clean_protection_username(raw: object) -> str:
    field = "password_protection_username"
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise ActionError("the user name must be a string", field)
    if len(raw) > MAX_PROTECTION_USERNAME:
        raise ActionError(
            f"the user name is longer than {MAX_PROTECTION_USERNAME} characters", field
        )
    # RFC 7617: the user-id cannot hold a colon; control characters cannot be typed at a prompt.
    if ":" in raw or not raw.isprintable():
        raise ActionError("the user name may not contain ':' or control characters", field)
    return raw


def _hash_password(raw: object) -> str:
    """Django's PBKDF2 hash of a new protection password ("" clears it)."""
    field = "password_protection_password"
    if raw is None or raw == "":
        return ""
    if not isinstance(raw, str):
        raise ActionError("the password must be a string", field)
    if len(raw) > MAX_PROTECTION_PASSWORD:
        raise ActionError(
            f"the password is longer than {MAX_PROTECTION_PASSWORD} characters", field
        )
    if not raw.isprintable():
        raise ActionError("the password may not contain control characters", field)
    # Always this hasher, whatever PASSWORD_HASHERS says: the node checks exactly this format
    # (webapps.node.basic_auth) without Django.
    hasher = PBKDF2PasswordHasher()
    return hasher.encode(raw, hasher.salt())


def _same_password(raw: str, stored: str) -> bool:
    return bool(stored) and PBKDF2PasswordHasher().verify(raw, stored)


def _check_protection(enabled: bool, username: str, password_hash: str) -> None:
    if enabled and not username:
        raise ActionError("password protection needs a user name", "password_protection_username")
    if enabled and not password_hash:
        raise ActionError("password protection needs a password", "password_protection_password")


def _clean_path(owner: User, raw: object, field: str, what: str) -> Path:
    try:
        path = homes.resolve_inside_home(settings.HOME_ROOT, owner.username, raw, what)
    except homes.PathError as exc:
        raise ActionError(str(exc), field) from None
    # A relative path grows when resolved: the stored, absolute one must still fit.
    limit = WebApp._meta.get_field(field).max_length
    if len(str(path)) > limit:
        raise ActionError(f"the {what} is longer than {limit} characters once resolved", field)
    return path


def _clean_virtualenv(owner: User, raw: object) -> str:
    if raw is None or raw == "":
        return ""
    return str(_clean_path(owner, raw, "virtualenv_path", "virtualenv path"))


def _clean_wsgi_entry(raw: object) -> str:
    try:
        return homes.clean_wsgi_entry(raw)
    except homes.PathError as exc:
        raise ActionError(str(exc), "wsgi_entry") from None


def do_create_webapp(
    domain: object,
    *,
    actor: User,
    origin: Origin,
    source_directory: object = None,
    wsgi_entry: object = None,
    python_version: object = None,
    virtualenv_path: object = None,
    enabled: bool = True,
    force_https: bool = False,
    password_protection_enabled: bool = False,
    password_protection_username: object = None,
    password_protection_password: object = None,
    template: object = None,
    workers: object = None,
    threads: object = None,
    worker_timeout: object = None,
) -> WebApp:
    """A new app; every field left out (None) takes its default.

    ``template`` (``webapps.starters.TEMPLATES``) writes a project into its source directory;
    left out, an app in its default source directory gets the plain WSGI starter."""
    for name, value in (
        ("enabled", enabled),
        ("force_https", force_https),
        ("password_protection_enabled", password_protection_enabled),
    ):
        _clean_bool(value, name)
    server = {
        name: _clean_server_setting(value, name)
        for name, value in (
            ("workers", workers), ("threads", threads), ("worker_timeout", worker_timeout)
        )
    }  # fmt: skip
    protection_username = _clean_protection_username(password_protection_username)
    protection_hash = _hash_password(password_protection_password)
    _check_protection(password_protection_enabled, protection_username, protection_hash)
    try:
        canonical = clean_domain(domain, actor.username, domain_policy())
    except DomainError as exc:
        raise ActionError(str(exc), "domain_name") from None
    default_source = source_directory is None or source_directory == ""
    if default_source:
        source = homes.default_source_directory(settings.HOME_ROOT, actor.username, canonical)
    else:
        source = _clean_path(actor, source_directory, "source_directory", "source directory")
    version = _clean_python_version(python_version)
    venv = _clean_virtualenv(actor, virtualenv_path)
    made = _starter(actor, canonical, source, template, default_source, version, bool(venv))
    if made is not None and made.virtualenv and not venv:
        venv = str(
            homes.home_of(settings.HOME_ROOT, actor.username).resolve().joinpath(*made.virtualenv)
        )
    if wsgi_entry not in (None, ""):
        entry = _clean_wsgi_entry(wsgi_entry)
    else:
        entry = made.wsgi_entry if made is not None else homes.DEFAULT_WSGI_ENTRY
    webapp = WebApp(
        owner=actor,
        domain=canonical,
        source_directory=str(source),
        wsgi_entry=entry,
        python_version=version,
        virtualenv_path=venv,
        enabled=enabled,
        force_https=force_https,
        password_protection_enabled=password_protection_enabled,
        password_protection_username=protection_username,
        password_protection_hash=protection_hash,
        **server,
    )
    try:
        with transaction.atomic(durable=True):
            # One create at a time per user (the row lock), so the limit below holds.
            User.objects.select_for_update().filter(pk=actor.pk).first()
            limit = settings.MAX_APPS_PER_USER
            if WebApp.objects.filter(owner=actor).count() >= limit:
                raise ActionError(
                    f"you already have {limit} web apps, the most a user may have "
                    f"(MAX_APPS_PER_USER={limit}); delete one first",
                    "domain_name",
                )
            if WebApp.objects.filter(domain=canonical).exists():
                raise _taken(domain, canonical)
            webapp.save()
            tls.automatic_for_new_app(webapp)
            if force_https:
                tls.publish_soon()
            starter = False
            if made is not None:
                # Written inside the transaction so a failure rolls the app back; the writes
                # are idempotent (existing names are kept), so a retry is always safe.
                starter = _write_starter(actor, webapp, made, source)
            audit(
                actor, "webapp.create", AuditEvent.Outcome.OK, canonical, origin,
                starter=starter, template=made_name(template, default_source),
            )  # fmt: skip
    except IntegrityError:
        # Two creates raced past the check above; the unique index decided.
        raise _taken(domain, canonical) from None
    return webapp


def made_name(template: object, default_source: bool) -> str:
    """The template an app is made from: the one asked for, else "wsgi" in the default source
    directory (the starter), else "" (the owner's own code)."""
    if template not in (None, ""):
        return str(template)
    return "wsgi" if default_source else ""


def _template_interpreter(version: str) -> str:
    """The node's interpreter of ``version`` that a template's virtualenv links to: from
    ``NODE_PYTHONS``, else the panel's own base interpreter for its own version."""
    configured = pythons.parse_pythons(settings.NODE_PYTHONS)
    if version in configured:
        return os.path.realpath(configured[version])
    if version == pythons.own_version():
        return os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    raise ActionError(
        f"the panel does not know where the nodes' Python {version} is, to make the template's "
        "virtualenv with it (NODE_PYTHONS)",
        "python_version",
    )


def _starter(
    actor: User,
    domain: str,
    source: Path,
    template: object,
    default_source: bool,
    version: str,
    own_venv: bool,
) -> starters.Starter | None:
    name = made_name(template, default_source)
    if not name:
        return None
    try:
        name = starters.check_template(name)
        home = homes.home_of(settings.HOME_ROOT, actor.username).resolve()
        version = version or pythons.own_version()
        made = starters.starter(
            name,
            domain=domain,
            source=source.relative_to(home).parts,
            interpreter="" if name == "wsgi" else _template_interpreter(version),
            python_version=version,
            platform_site=pythons.platform_site(
                settings.PLATFORM_PACKAGES_DIR, settings.PLATFORM_PACKAGES
            ),
        )
    except starters.StarterError as exc:
        raise ActionError(str(exc), "template") from None
    if own_venv and made.virtualenv:  # the owner's virtualenv instead of the template's
        inside = made.virtualenv
        kept = tuple(e for e in made.entries if e.parts[: len(inside)] != inside)
        made = starters.Starter(kept, made.wsgi_entry, (), made.static)
    return made


def _write_starter(actor: User, webapp: WebApp, made: starters.Starter, source: Path) -> bool:
    home = homes.home_of(settings.HOME_ROOT, actor.username).resolve()
    try:
        written = homes.write_home_entries(
            settings.HOME_ROOT,
            actor.username,
            made.entries,
            uid=actor.uid or 0,
            gid=actor.gid or 0,
            node_socket=settings.NODE_CONTROL_SOCKET,
        )
    except homes.PathError as exc:
        raise ActionError(f"cannot create {source}: {exc}", "source_directory") from None
    except OSError as exc:
        raise ActionError(f"cannot create {source}: {exc.strerror}", "source_directory") from None
    for url, parts in made.static:
        StaticFileMapping.objects.create(webapp=webapp, url=url, path=str(home.joinpath(*parts)))
    return bool(written)


def _taken(typed: object, canonical: str) -> ActionError:
    spelled = f"{typed!r} (as {canonical})" if typed != canonical else repr(canonical)
    return ActionError(f"the domain {spelled} is already used by a web app", "domain_name")


def do_update_webapp(
    webapp: WebApp, changes: dict[str, Any], *, actor: User, origin: Origin
) -> WebApp:
    """Change the fields given (a partial update). Nothing changes, nothing is written: no save,
    no ``updated_at`` bump, no audit row."""
    unknown = sorted(set(changes) - set(UPDATABLE_FIELDS))
    if unknown:
        raise ActionError(f"cannot change {', '.join(unknown)}", unknown[0])
    owner = webapp.owner
    cleaned: dict[str, Any] = {}
    if "source_directory" in changes:
        cleaned["source_directory"] = str(
            _clean_path(owner, changes["source_directory"], "source_directory", "source directory")
        )
    if "wsgi_entry" in changes:
        cleaned["wsgi_entry"] = _clean_wsgi_entry(changes["wsgi_entry"])
    if "python_version" in changes:
        cleaned["python_version"] = _clean_python_version(changes["python_version"])
    if "virtualenv_path" in changes:
        cleaned["virtualenv_path"] = _clean_virtualenv(owner, changes["virtualenv_path"])
    for name in BOOLEAN_FIELDS:
        if name in changes:
            cleaned[name] = _clean_bool(changes[name], name)
    for name in SERVER_FIELDS:
        if name in changes:
            cleaned[name] = _clean_server_setting(changes[name], name)
    if "password_protection_username" in changes:
        cleaned["password_protection_username"] = _clean_protection_username(
            changes["password_protection_username"]
        )
    password = changes.get("password_protection_password")
    if "password_protection_password" in changes and not (
        isinstance(password, str) and _same_password(password, webapp.password_protection_hash)
    ):
        cleaned["password_protection_hash"] = _hash_password(password)
    _check_protection(
        cleaned.get("password_protection_enabled", webapp.password_protection_enabled),
        cleaned.get("password_protection_username", webapp.password_protection_username),
        cleaned.get("password_protection_hash", webapp.password_protection_hash),
    )
    changed = {
        name: [getattr(webapp, name), value]
        for name, value in cleaned.items()
        if getattr(webapp, name) != value
    }
    if not changed:
        return webapp
    fields = list(changed)
    if "password_protection_hash" in changed:
        # The trail says whether a password is set, never what it is (nor its hash).
        old, new = changed.pop("password_protection_hash")
        changed["password_protection_password"] = ["set" if old else "", "set" if new else ""]
    with transaction.atomic(durable=True):
        for name in fields:
            setattr(webapp, name, cleaned[name])
        webapp.save(update_fields=[*fields, "updated_at"])
        audit(actor, "webapp.update", AuditEvent.Outcome.OK, webapp.domain, origin, changed=changed)
        if "force_https" in changed:
            tls.publish_soon()  # the proxies redirect by the certificate bundle
    return webapp


def do_set_webapp_enabled(webapp: WebApp, enabled: bool, *, actor: User, origin: Origin) -> WebApp:
    """Enable or disable an app (``webapp.enable`` / ``webapp.disable``); a disabled app's
    visitors get the node's "disabled" page within the node's lookup cache time. Already so:
    nothing is written."""
    _clean_bool(enabled, "enabled")
    if webapp.enabled == enabled:
        return webapp
    with transaction.atomic(durable=True):
        webapp.enabled = enabled
        webapp.save(update_fields=["enabled", "updated_at"])
        action = "webapp.enable" if enabled else "webapp.disable"
        audit(actor, action, AuditEvent.Outcome.OK, webapp.domain, origin)
    return webapp


def do_delete_webapp(webapp: WebApp, *, actor: User, origin: Origin) -> None:
    """Deletes the app and its reload history; the user's files are left alone."""
    with transaction.atomic(durable=True):
        domain = webapp.domain
        had_tls = webapp.force_https or Certificate.objects.filter(webapp=webapp).exists()
        webapp.delete()
        audit(actor, "webapp.delete", AuditEvent.Outcome.OK, domain, origin)
        if had_tls:
            tls.publish_soon()


def do_reload_webapp(webapp: WebApp, *, actor: User, origin: Origin) -> ReloadEvent:
    """Reload the app on the node serving this panel process and record the outcome.

    Raises ``ReloadThrottled`` past RELOAD_THROTTLE_PER_MINUTE for this user. The reload itself
    runs outside any transaction (it waits on a node); its outcome is written afterwards.
    """
    verdict = throttle.hit_reload(actor.pk)
    if not verdict.allowed:
        raise ReloadThrottled(verdict.retry_after)
    with throttle.reload_in_flight(actor.pk) as alone:
        if not alone:
            raise ReloadInFlight()
        result = reload_app(webapp)
    with transaction.atomic(durable=True):
        event = ReloadEvent.objects.create(
            webapp=webapp,
            user=actor,
            via=origin.via,
            backend=result.backend[:100],
            outcome=ReloadEvent.outcome_of(result.result),
            duration_ms=None if result.duration_ms is None else max(0, int(result.duration_ms)),
            workers=result.workers,
            generation=result.generation,
            misrouted=result.misrouted,
            traffic_backend=result.traffic_backend[:100],
            message=result.message,
            log_tail=result.log_tail,
            request_id=origin.request_id,
            client_ip=origin.client_ip,
        )
        audit(
            actor,
            "webapp.reload",
            AuditEvent.Outcome.OK if result.ok else AuditEvent.Outcome.FAILED,
            webapp.domain,
            origin,
            backend=result.backend,
            result=str(result.result),
            duration_ms=event.duration_ms,
            generation=event.generation,
            misrouted=event.misrouted,
            message=result.message,
        )
    return event


# --- static files mappings --------------------------------------------------------------------

MAX_STATIC_MAPPINGS = 100  # per app; the node matches every request against them
STATIC_FIELDS = ("url", "path", "cache_control")


def _clean_static(webapp: WebApp, fields: dict[str, Any]) -> dict[str, str]:
    unknown = sorted(set(fields) - set(STATIC_FIELDS))
    if unknown:
        raise ActionError(f"cannot set {', '.join(unknown)}", unknown[0])
    cleaned: dict[str, str] = {}
    for name, check in (("url", check_url_prefix), ("cache_control", check_cache_control)):
        if name in fields:
            try:
                cleaned[name] = check(fields[name])
            except InvalidMapping as exc:
                raise ActionError(str(exc), name) from None
    if "path" in fields:
        try:
            path = homes.clean_static_directory(
                settings.HOME_ROOT, webapp.owner.username, fields["path"]
            )
        except homes.PathError as exc:
            raise ActionError(str(exc), "path") from None
        cleaned["path"] = str(path)
    return cleaned


def _url_taken(webapp: WebApp, url: str, exclude: int | None = None) -> bool:
    others = StaticFileMapping.objects.filter(webapp=webapp, url=url)
    if exclude is not None:
        others = others.exclude(pk=exclude)
    return others.exists()


def do_create_static_mapping(
    webapp: WebApp, *, url: object, path: object, cache_control: object = "", actor: User,
    origin: Origin,
) -> StaticFileMapping:  # fmt: skip
    """A new static files mapping of ``webapp``; the node serves it within its cache time."""
    cleaned = _clean_static(webapp, {"url": url, "path": path, "cache_control": cache_control})
    try:
        with transaction.atomic(durable=True):
            if _url_taken(webapp, cleaned["url"]):
                raise ActionError(f"the URL {cleaned['url']!r} is already mapped", "url")
            if StaticFileMapping.objects.filter(webapp=webapp).count() >= MAX_STATIC_MAPPINGS:
                raise ActionError(f"an app has at most {MAX_STATIC_MAPPINGS} mappings", "url")
            mapping = StaticFileMapping.objects.create(webapp=webapp, **cleaned)
            audit(actor, "static.create", AuditEvent.Outcome.OK, webapp.domain, origin, **cleaned)
    except IntegrityError:
        raise ActionError(f"the URL {cleaned['url']!r} is already mapped", "url") from None
    return mapping


def do_update_static_mapping(
    mapping: StaticFileMapping, changes: dict[str, Any], *, actor: User, origin: Origin
) -> StaticFileMapping:
    """Change some of ``url``, ``path``, ``cache_control``; a change to nothing writes nothing."""
    cleaned = _clean_static(mapping.webapp, changes)
    changed = {k: [getattr(mapping, k), v] for k, v in cleaned.items() if getattr(mapping, k) != v}
    if not changed:
        return mapping
    try:
        with transaction.atomic(durable=True):
            if "url" in changed and _url_taken(mapping.webapp, cleaned["url"], mapping.pk):
                raise ActionError(f"the URL {cleaned['url']!r} is already mapped", "url")
            for name in changed:
                setattr(mapping, name, cleaned[name])
            mapping.save()
            audit(
                actor, "static.update", AuditEvent.Outcome.OK, mapping.webapp.domain, origin,
                id=mapping.pk, changed=changed,
            )  # fmt: skip
    except IntegrityError:
        raise ActionError(f"the URL {cleaned['url']!r} is already mapped", "url") from None
    return mapping


def do_delete_static_mapping(mapping: StaticFileMapping, *, actor: User, origin: Origin) -> None:
    with transaction.atomic(durable=True):
        domain, url, path = mapping.webapp.domain, mapping.url, mapping.path
        mapping.delete()
        audit(actor, "static.delete", AuditEvent.Outcome.OK, domain, origin, url=url, path=path)


# --- logs ------------------------------------------------------------------------------------


def do_delete_log(
    webapp: WebApp, kind: str, index: int, *, backend: str, actor: User, origin: Origin
) -> bool:
    """Delete one of the app's log files on ``backend`` (the current one is emptied).

    False when there was no such file (nothing is audited then). Raises ``ControlError`` or
    ``OSError`` when the node cannot be asked.
    """
    from webapps import node_client

    deleted = node_client.delete_log(webapp.domain, kind, index, backend=backend)
    if deleted:
        with transaction.atomic(durable=True):
            audit(
                actor, "logs.delete", AuditEvent.Outcome.OK, webapp.domain, origin,
                kind=kind, index=index, backend=backend,
            )  # fmt: skip
    return deleted


__all__ = [
    "ActionError",
    "ReloadInFlight",
    "ReloadThrottled",
    "do_create_static_mapping",
    "do_create_webapp",
    "do_delete_log",
    "do_delete_static_mapping",
    "do_delete_webapp",
    "do_reload_webapp",
    "do_set_webapp_enabled",
    "do_update_static_mapping",
    "do_update_webapp",
    "python_versions",
    "server_defaults",
    "server_limits",
]
