"""Driving the dashboard in a real browser: Debian's chromium for pytest-playwright, signing in, and the
screenshots docs/ shows (taken when ``REKINDLE_SCREENSHOTS=DIR`` is set)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from playwright.sync_api import Page


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
