"""A person in a real browser: sign in as IronHand00, press Reload on the Web tab, see where it
ran. Drives Debian's headless chromium (installed by `make test`), never a downloaded browser.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect, sync_playwright

from scripts.platform import REPO_ROOT
from tests.e2e.harness import request, routing_table
from tests.support import CHROMIUM_FLAGS, chromium_binary

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ARTIFACTS = REPO_ROOT / "test-artifacts"
# *.localhost names resolve to loopback; pin them to the address the proxy listens on.
RESOLVE_LOCALHOST = "--host-resolver-rules=MAP *.localhost 127.0.0.1"


@pytest.mark.timeout(900)
def test_it_signs_in_and_reloads_from_the_web_tab(platform, cast, apps):
    chromium = chromium_binary()
    username, domain = next(iter(apps.items()))
    expected = routing_table(platform).backend_for(domain).name
    base = f"http://{platform.config.panel_host}:{platform.config.proxy_port}"
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=[*CHROMIUM_FLAGS, RESOLVE_LOCALHOST]
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.set_default_timeout(60_000)
            page.goto(f"{base}/accounts/login/")
            page.fill("input[name=username]", username)
            page.fill("input[name=password]", cast.password)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/user/{username}/webapps/")

            form = page.locator(f"form[data-reload][action*='/webapps/{domain}/reload/']")
            # A marker that a page load would wipe: the outcome must update in place.
            page.evaluate("window.stillTheSamePage = true")
            form.locator("button").click()
            outcome = form.locator(".outcome")
            # Never requested yet (the suite's first test), nothing runs there and the outcome
            # says so; run after another test that requested it, it was reloaded.
            expect(outcome).to_contain_text(
                re.compile(
                    rf"Not running on {expected}: the next request starts it with this code"
                    rf"|Reloaded on {expected} in"
                ),
                timeout=60_000,
            )
            served = request(platform.config.proxy_port, "GET", "/", host=domain, timeout=60)
            assert served.headers["x-backend"] == expected
            generation = int(served.headers["x-app-generation"])
            form.locator("button").click()
            expect(outcome).to_contain_text(f"Reloaded on {expected} in", timeout=60_000)
            expect(outcome).to_contain_text(f"generation {generation + 1})")
            assert page.evaluate("window.stillTheSamePage") is True
            page.screenshot(path=str(ARTIFACTS / "web-tab-reload.png"), full_page=True)
        finally:
            browser.close()
