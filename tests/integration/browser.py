"""The web console in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``), driven with Selenium.

Every request the page makes is read back from the browser's own network log (the
DevTools ``Network.requestWillBeSent`` events), so a test can say what the console
asked the controller for and where from.  Screenshots go to ``var/console/``.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from mininet_topos import lab as harness

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "var" / "console"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


class Request(NamedTuple):
    method: str
    url: str


def require_chromium() -> None:
    """No browser is a failure, not a skip: ``make test`` installs it."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: make install (apt chromium chromium-driver)",
                    pytrace=False)


class Console:
    """One headless Chromium on one controller's console."""

    def __init__(self, base_url: str, width: int = 1400, height: int = 900) -> None:
        require_chromium()
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--disable-gpu", f"--window-size={width},{height}"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        # An explicit driver path: Selenium then never looks for (or downloads) one.
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.base_url = base_url
        self.seen: list[Request] = []

    def open(self, view: str, refresh_s: float | None = None) -> float:
        """Load the console afresh on ``view`` (from a blank page: a URL that differs
        only by its #fragment would not reload); returns the seconds the load took."""
        query = f"?refresh={refresh_s}" if refresh_s else ""
        self.driver.get("about:blank")
        start = time.monotonic()
        self.driver.get(f"{self.base_url}/si/ui/{query}#{view}")
        return time.monotonic() - start

    def show(self, view: str) -> None:
        """Switch views in the page (no reload)."""
        self.driver.find_element(By.CSS_SELECTOR, f'#tabs a[data-view="{view}"]').click()

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 10.0,
             poll: float = 0.05) -> Any:
        """Poll ``check`` until it returns something true; that value."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = check()
            except StaleElementReferenceException:   # the page re-rendered under us
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"console: {what} not seen within {timeout} s")
            time.sleep(poll)

    def refreshes(self) -> int:
        return int(self.driver.execute_script("return document.body.dataset.refreshes || 0"))

    def screenshot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), path
        return path

    def requests(self) -> list[Request]:
        """Every request the page has sent so far (the log is read and kept)."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                req = message["params"]["request"]
                self.seen.append(Request(req["method"], req["url"]))
        return list(self.seen)

    def errors(self) -> list[str]:
        """What the page logged as errors (uncaught exceptions, failed loads)."""
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def quit(self) -> None:
        self.driver.quit()



@contextlib.contextmanager
def switchless_controller(work: Path, doc: dict, timeout: float = 120.0,
                          **env: str) -> Iterator[harness.Controller]:
    """ryu-manager serving ``doc`` (with ``env`` in its environment only) on free ports
    no switch knows: what the console shows of a configuration, with no traffic."""
    (work / "config.json").write_text(json.dumps(doc))
    ctl = harness.Controller(of_port=harness.free_port(), wsapi_port=harness.free_port(),
                             workdir=work, config=work / "config.json")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        ctl.start()
    try:
        deadline = time.monotonic() + timeout
        while not _answers(ctl):
            assert time.monotonic() < deadline, f"no REST after {timeout} s\n{ctl.log_tail()}"
            time.sleep(0.5)
        yield ctl
    finally:
        ctl.stop()


def _answers(ctl: harness.Controller) -> bool:
    assert ctl.proc.poll() is None, ctl.log_tail()
    try:
        return ctl.rest("GET", "health", timeout=2)[0] == 200
    except OSError:
        return False
