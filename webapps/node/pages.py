"""The pages a node answers itself: unknown domain, an app that cannot start, a bad Host, a
disabled app, a password-protected app without the password."""

from __future__ import annotations

from html import escape

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;
color:#222}}h1{{font-size:1.4rem}}code{{background:#f3f3f3;padding:0 .25rem}}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


def _page(title: str, body: str) -> bytes:
    return _PAGE.format(title=escape(title), body=body).encode()


def unknown_domain(host: str) -> bytes:
    return _page(
        "No web app here",
        f"<p>There is no web app configured for <code>{escape(host)}</code> on this server.</p>"
        "<p>If it is yours, check its domain in the Web tab of the control panel.</p>",
    )


def app_unavailable(name: str, reason: str, error_log: str) -> bytes:
    return _page(
        "Something went wrong :-(",
        f"<p>The web app <code>{escape(name)}</code> could not answer: {escape(reason)}.</p>"
        f"<p>Its owner can find the details in its error log, <code>{escape(error_log)}</code> "
        "(the Web tab of the control panel shows its last lines).</p>",
    )


def bad_host(detail: str) -> bytes:
    return _page("Bad request", f"<p>The Host header is not valid: {escape(detail)}.</p>")


def disabled(host: str) -> bytes:
    return _page(
        "This web app is disabled",
        f"<p>The web app <code>{escape(host)}</code> has been disabled by its owner.</p>"
        "<p>If it is yours, enable it again in the Web tab of the control panel.</p>",
    )


def password_required(host: str) -> bytes:
    return _page(
        "Password required",
        f"<p>The web app <code>{escape(host)}</code> is password-protected: "
        "sign in with the user name and password its owner gave you.</p>",
    )
