"""Debian's Chromium under Selenium, for tests of the station page as a person sees it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def chromium(width: int, height: int) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    with tempfile.TemporaryDirectory(prefix="ww-chromium-") as profile:
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--autoplay-policy=no-user-gesture-required",
                    f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            opts.add_argument(arg)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        try:
            yield driver
        finally:
            driver.quit()


def wait(driver: Any, what: str, cond: Any, within: float = 30.0) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:  # the page re-renders live: an element may go stale between two looks at it
        return WebDriverWait(driver, within, poll_frequency=0.2,
                             ignored_exceptions=(StaleElementReferenceException,)).until(cond)
    except TimeoutException as exc:
        raise AssertionError(f"the page never showed {what}") from exc


def sign_in(driver: Any, base: str, user: str, password: str, *, path: str = "/") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(f"{base}/login")
    wait(driver, "the sign-in form", lambda d: d.find_elements(By.ID, "username"))
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password + Keys.ENTER)
    wait(driver, "the ward page", lambda d: d.find_elements(By.ID, "grid"))
    if path != "/":
        driver.get(f"{base}{path}")


def page_metrics(driver: Any) -> dict[str, float]:
    """Heap, DOM nodes and listeners after a forced garbage collection (DevTools protocol)."""
    driver.execute_cdp_cmd("HeapProfiler.collectGarbage", {})
    driver.execute_cdp_cmd("Performance.enable", {})
    got = driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]
    out = {m["name"]: float(m["value"]) for m in got}
    # nodes in the document (text nodes too), and those that are content: alarm and audit
    # rows come and go with the ward. What no longer is in the document yet is alive
    # (Nodes - Attached) is what a leak holds on to.
    out.update(driver.execute_script("""
        const count = (root) => {
          if (!root) return 0;
          const w = document.createTreeWalker(root, NodeFilter.SHOW_ALL);
          let n = 0; while (w.nextNode()) n++; return n;
        };
        const rows = ["alarm-rows", "inop-rows", "audit-rows", "system-rows"]
          .reduce((n, id) => n + count(document.getElementById(id)), 0);
        return {Attached: count(document) + 1, ContentNodes: rows};"""))
    return out
