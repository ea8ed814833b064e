"""The parent app in a real browser: Debian's chromium driven by Playwright (its PyPI wheel
ships the driver; no browser is downloaded), and the app as ``teddy-cloud portal``."""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from support.brokers import free_port, wait_for_port
from support.portal import link_from
from support.processes import start_cli

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]
PHONE = {"width": 375, "height": 740}


@contextmanager
def browser():
    """A headless chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@contextmanager
def running_portal(env: dict[str, str], log: Path):
    """``teddy-cloud portal`` on a free port; yields its base URL."""
    port = free_port()
    env = {**env, "TEDDY_PORTAL__PORT": str(port), "TEDDY_PORTAL__HOST": "127.0.0.1",
           "TEDDY_PORTAL__BASE_URL": f"http://localhost:{port}"}
    process = start_cli("teddy-cloud", "--log-level", "INFO", "portal", env=env, log=log)
    try:
        wait_for_port(port, 20)
        yield f"http://localhost:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def sign_in(page: Any, base: str, sink: Any, email: str) -> None:
    """Sign in as a parent does: type the address, open the mailed link, press Sign in."""
    page.goto(f"{base}/signin")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_role("button", name="Send me a sign-in link").click()
    page.get_by_text("We sent a sign-in link").wait_for()
    page.goto(link_from(sink, email))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/bears")
