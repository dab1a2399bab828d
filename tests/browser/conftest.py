"""A real headless Chromium against a live Athena admin on 127.0.0.1.

Debian's `chromium` and `chromium-driver` (`.ci/run` installs them when missing) and
Selenium from PyPI. Each test gets a fresh browser profile; the browser's console log and
every request it made (Chromium's performance log) are collected, so a test can assert that
nothing was logged as an error and nothing left 127.0.0.1. Screenshots go to
var/screenshots/ (CI keeps them as artefacts).

Use `browser.open_as(persona, path)` for a page a person signs in to see, e.g.
`browser.open_as(operator, "/admin/backends/llmbackend/")`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from pytest_django.live_server_helper import LiveServer
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
WIDTH, HEIGHT = 1280, 900
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers have a small /dev/shm
    f"--window-size={WIDTH},{HEIGHT}",
]
# Schemes that never leave the machine: the page's own inline data and blobs.
_LOCAL_SCHEMES = {"data", "blob", "about", "chrome", "devtools"}


def _program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"{name} is not installed: `apt-get install -y chromium chromium-driver` "
            "(.ci/run does this when they are missing)."
        )
    return path


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    """pytest-django's live server, on 127.0.0.1 by address (its default is `localhost`)."""
    server = LiveServer("127.0.0.1:0")
    yield server
    server.stop()


class Browser:
    """A Chromium session on the live server, with what it logged and requested."""

    def __init__(self, driver: webdriver.Chrome, base_url: str, name: str) -> None:
        self.driver = driver
        self.base_url = base_url
        self.name = name
        self.console: list[dict[str, Any]] = []
        self.requested: list[str] = []
        self._urls: dict[str, str] = {}  # request id -> URL, from the performance log
        self.blocked: list[str] = []  # refused by the browser itself (CSP): never sent

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def log_in(self, user: User) -> None:
        """Sign in through the admin's login form, as a person would."""
        self.open("/admin/login/")
        self.fill_login_form(user)
        self.wait_for("#user-tools")

    def fill_login_form(self, user: User) -> None:
        """Fill and send the login form on the page shown (after a redirect to it, say)."""
        self.wait_for('form#login-form input[name="username"]').send_keys(user.username)
        # The shared personas' password (tests/conftest.py): "pw-" + username.
        self.driver.find_element(By.NAME, "password").send_keys("pw-" + user.username)
        self.driver.find_element(By.CSS_SELECTOR, '#login-form input[type="submit"]').click()

    def open_as(self, user: User, path: str) -> None:
        self.log_in(user)
        self.open(path)

    def wait_for(self, css: str, timeout: float = 15) -> Any:
        return WebDriverWait(self.driver, timeout).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
        )

    def find_all(self, css: str) -> list[Any]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def js(self, script: str) -> Any:
        return self.driver.execute_script(script)

    def screenshot(self, label: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.name}-{label}.png"
        self.driver.save_screenshot(str(path))
        return path

    def collect_logs(self) -> None:
        """Drain the console and network logs Chromium kept since the last call."""
        self.console.extend(self.driver.get_log("browser"))
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message["method"] == "Network.requestWillBeSent":
                self._urls[params["requestId"]] = params["request"]["url"]
                self.requested.append(params["request"]["url"])
            elif message["method"] == "Network.loadingFailed" and params.get("blockedReason"):
                self.blocked.append(self._urls.get(params["requestId"], ""))

    def console_errors(self) -> list[dict[str, Any]]:
        self.collect_logs()
        return [e for e in self.console if e["level"] == "SEVERE"]

    def requests_leaving_the_machine(self) -> list[str]:
        """Requests to anywhere but 127.0.0.1, less those the browser refused to send."""
        self.collect_logs()
        return [
            url
            for url in self.requested
            if urlsplit(url).scheme not in _LOCAL_SCHEMES
            and urlsplit(url).hostname != "127.0.0.1"
            and url not in self.blocked
        ]


@pytest.fixture
def browser(
    live_server: LiveServer, transactional_db: None, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Browser]:
    """Headless Chromium with a fresh profile, 1280 px wide, logging console and network."""
    # The login rate limit counts in the cache, shared with the live server's thread: each
    # test starts with a fresh count, as a person signing in once would.
    cache.clear()
    options = webdriver.ChromeOptions()
    options.binary_location = _program("chromium")
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(_program("chromedriver")))
    # The viewport itself 1280 px wide (the window's size includes no scrollbar or frame).
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )
    session = Browser(driver, live_server.url, request.node.name.replace("/", "_"))
    try:
        yield session
    finally:
        session.screenshot("last")
        driver.quit()
