"""Headless Chromium (Debian's `chromium` and `chromium-driver`) driven by Selenium, for the
tests that look at the UIs as their users do. Screenshots go to test-artifacts/."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from infra.settings import PROJECT_ROOT

ARTIFACTS = PROJECT_ROOT / "test-artifacts"


@contextmanager
def chromium(width: int = 1400, height: int = 1100) -> Iterator[WebDriver]:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver:
        pytest.fail("chromium and chromedriver are needed: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--disable-extensions",
        "--no-first-run",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The given driver path keeps Selenium Manager from looking for one on the network.
    session = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    session.set_page_load_timeout(120)
    try:
        yield session
    finally:
        session.quit()


def console_errors(browser: WebDriver) -> list[str]:
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(browser: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    browser.save_screenshot(str(path))
    return path


def wait_until(browser: WebDriver, condition: Callable[[], object], timeout: float, what: str, shot: str) -> object:
    """Poll `condition` until it returns something truthy; on timeout, a screenshot and a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # an element that is not there yet, a stale one: look again
            value = None
        if value:
            return value
        time.sleep(0.5)
    path = screenshot(browser, f"{shot}-timeout")
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (screenshot: {path})")
