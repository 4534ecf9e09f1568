"""The Web tab in headless Chromium: Reload updates the page in place (progressive enhancement).

Driven over the DevTools protocol with aiohttp's WebSocket client; Debian's ``chromium`` is
installed by ``make browser`` (part of ``make test``), and the test fails without it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
import pytest

from tests.support import CHROMIUM_FLAGS, chromium_binary, wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def chromium():
    profile = Path(tempfile.mkdtemp(prefix="test-chromium-"))
    process = subprocess.Popen(
        [
            chromium_binary(),
            "--headless",
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        wait_until(
            lambda: port_file.exists() and port_file.read_text().strip(), 20, what="devtools"
        )
        yield int(port_file.read_text().split()[0])
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """Just enough of the DevTools protocol: call a method, evaluate an expression."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params):
        self.next_id += 1
        await self.ws.send_str(json.dumps({"id": self.next_id, "method": method, "params": params}))
        async with asyncio.timeout(20):
            while True:
                message = json.loads(await self.ws.receive_str())
                if message.get("id") == self.next_id:
                    if "error" in message:
                        raise RuntimeError(message["error"])
                    return message["result"]

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {expression}")
            await asyncio.sleep(0.05)


async def reload_in_place(devtools_port: int, url: str, session_cookie: str) -> dict:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        async with http.get(f"http://127.0.0.1:{devtools_port}/json/list") as response:
            target = next(t for t in await response.json() if t["type"] == "page")
        async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            page = Page(ws)
            await page.call("Network.enable")
            await page.call(
                "Network.setCookie", name="sessionid", value=session_cookie, url=url, path="/"
            )
            await page.call("Page.enable")
            await page.call("Page.navigate", url=url)
            await page.wait_for(
                "document.readyState === 'complete' && !!document.querySelector('[data-reload]')"
            )
            await page.evaluate("window.marker = 'same page'")
            await page.evaluate("document.querySelector('form[data-reload] button').click()")
            outcome = await page.wait_for(
                "(t => /Reload(ed| failed)|Not running/.test(t) && t)"
                "(document.querySelector('form[data-reload] .outcome').textContent.trim())"
            )
            return {
                "outcome": outcome,
                "marker": await page.evaluate("window.marker"),
                "log_tail": await page.evaluate(
                    "(p => p.hidden ? null : p.textContent)"
                    "(document.querySelector('form[data-reload] .log-tail'))"
                ),
            }


def signed_in_cookie(client, user) -> str:
    client.force_login(user)
    return client.cookies["sessionid"].value


def reload_seen_in_browser(settings, live_server, chromium, client, owner, reloader) -> dict:
    """The owner presses Reload on the Web tab, with ``reloader`` behind it."""
    settings.WEBAPPS_RELOADER = reloader
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost", "127.0.0.1"]
    url = f"{live_server.url}/user/IronHand/webapps/"
    return asyncio.run(reload_in_place(chromium, url, signed_in_cookie(client, owner)))


def test_reload_updates_the_web_tab_in_place(
    settings, live_server, chromium, client, owner, owner_app
):
    seen = reload_seen_in_browser(
        settings, live_server, chromium, client, owner, "tests.webapps.support.OkReloader"
    )
    assert seen == {"outcome": "Reloaded on b7 in 12 ms", "marker": "same page", "log_tail": None}
    assert owner_app.reloads.get().via == "ui"


def test_a_failed_reload_shows_the_log_tail_in_place(
    settings, live_server, chromium, client, owner, owner_app
):
    seen = reload_seen_in_browser(
        settings, live_server, chromium, client, owner, "tests.webapps.support.BrokenAppReloader"
    )
    assert seen["outcome"] == "Reload failed on b7: SyntaxError: <boom> (the app failed to start)"
    assert seen["marker"] == "same page"
    assert "SyntaxError: <boom>" in seen["log_tail"]
