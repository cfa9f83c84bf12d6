"""Driving the dashboard in a real browser: Debian's chromium for pytest-playwright, signing in, and the
screenshots docs/ shows (taken when ``REKINDLE_SCREENSHOTS=DIR`` is set)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, sync_playwright


def chromium() -> str:
    """Debian's chromium (pytest-playwright drives it; a browser download does not work here), installed by
    scripts/ensure-chromium when missing."""
    given = os.environ.get("REKINDLE_CHROMIUM") or shutil.which("chromium")
    if not given:
        subprocess.run(["bash", str(Path(__file__).parents[1] / "scripts" / "ensure-chromium")], check=True)
        given = shutil.which("chromium")
    assert given, "no chromium: scripts/ensure-chromium could not install Debian's package"
    return given


def shot(page: Page, name: str) -> None:
    folder = os.environ.get("REKINDLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def sign_in(page: Page, url: str, name: str, password: str) -> None:
    page.goto(url + "/signin")
    page.get_by_label("User").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def in_browser(work: Callable[[Page], None]) -> None:
    """``work(page)`` in Debian's Chromium, without pytest-playwright's ``page`` fixture: that fixture is
    parametrised by browser and pytest groups the tests using it together, splitting their modules (a
    module-scoped server would be started twice). On a thread of its own: Playwright's sync API runs one
    instance per thread, and the fixture's may be open."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
                try:
                    work(browser.new_page())
                finally:
                    browser.close()
        except BaseException as exc:  # re-raised in the test's thread, assertion errors included
            failed.append(exc)

    thread = threading.Thread(target=run, name="browser")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
