"""The served app in a real headless Chromium: launch a tiny run, see it through.

Starts `streamlit run app.py` on 127.0.0.1 with a temp runs folder, launches a
two-epoch run on 100 built-in images, waits for it, opens the UMAP and
downloads the selection CSV. Screenshots go to artifacts/.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = ROOT / "artifacts"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--window-size=1400,1800",
)  # fmt: skip

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver "
        "(apt-get install chromium chromium-driver)",
    ),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """The app served on a free local port; its URL."""
    port = free_port()
    env = {**os.environ, "CORESET_RUNS_DIR": str(tmp_path / "runs")}
    log = open(tmp_path / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py",
         "--server.address", "127.0.0.1", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = (tmp_path / "server.log").read_text()
                    raise RuntimeError(f"the server did not start: {output}") from None
                time.sleep(0.5)
        yield url
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior",
        {"behavior": "allow", "downloadPath": str(downloads)},
    )
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def test_launch_watch_explore_and_export(server: str, browser: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    ARTIFACTS.mkdir(exist_ok=True)

    def wait_for_text(text: str, timeout: float) -> None:
        WebDriverWait(driver, timeout).until(lambda d: text in d.page_source)

    def shoot(name: str) -> None:
        time.sleep(1)  # let charts finish drawing
        driver.save_screenshot(str(ARTIFACTS / f"browser-{name}.png"))

    # Data: the built-in sample out of the box
    driver.get(server)
    wait_for_text("Examples per class", 120)
    shoot("data")

    # Select: a tiny run, launched from the form
    driver.get(f"{server}/select")
    for label, value in (("Epochs", "2"), ("Batch size", "64"),
                         ("Pool size (empty: the whole dataset)", "100")):  # fmt: skip
        field = WebDriverWait(driver, 60).until(
            lambda d: d.find_element(By.CSS_SELECTOR, f'input[aria-label="{label}"]')  # noqa: B023
        )
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(value, Keys.TAB)
    driver.find_element(By.XPATH, "//button[.//p[text()='Launch']]").click()
    wait_for_text("finished · epoch 2/2", 240)
    shoot("select")

    # Explore: the UMAP, fitted in a background job
    driver.get(f"{server}/explore")
    WebDriverWait(driver, 240).until(
        lambda d: d.find_elements(
            By.CSS_SELECTOR, ".st-key-explore_map_box .js-plotly-plot"
        )
    )
    shoot("explore")

    # a box drawn over the middle of the map shows those images
    from selenium.webdriver.common.action_chains import ActionChains

    area = driver.find_element(
        By.CSS_SELECTOR, ".st-key-explore_map_box .js-plotly-plot .nsewdrag"
    )
    width, height = area.rect["width"], area.rect["height"]
    drag = ActionChains(driver)
    drag.move_to_element_with_offset(area, -width * 0.3, -height * 0.3)
    drag.click_and_hold()
    # round the middle 60% in small steps: a lasso path, and a box's extent
    for dx, dy in ((0.6, 0), (0, 0.6), (-0.6, 0), (0, -0.6)):
        for _ in range(5):
            drag.move_by_offset(width * dx / 5, height * dy / 5)
    drag.release().perform()
    wait_for_text("selected, lowest scores first", 60)
    shoot("explore-selection")

    # Export: the selection CSV, downloaded
    driver.get(f"{server}/export")
    wait_for_text("Download the selection (CSV)", 60)
    button = "//button[.//p[text()='Download the selection (CSV)']]"
    driver.find_element(By.XPATH, button).click()
    downloads: Path = driver.downloads
    WebDriverWait(driver, 30).until(lambda d: list(downloads.glob("*.csv")))
    shoot("export")
    (path,) = downloads.glob("*.csv")
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["index", "id", "label", "score", "rank", "decision"]
    assert len(rows) == 100
    assert sum(row["decision"] == "keep" for row in rows) == 30  # fraction 0.3

    # Compare: shown for the record
    driver.get(f"{server}/compare")
    wait_for_text("Launch evaluation", 60)
    shoot("compare")
    shutil.copy(path, ARTIFACTS / "browser-selection.csv")


def test_a_page_url_on_a_fresh_server_gets_the_frame(
    server: str, browser: object
) -> None:
    """A tab reconnecting to a restarted server opens a page's URL first."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.get(f"{server}/explore")
    WebDriverWait(driver, 90).until(lambda d: "Runs folder" in d.page_source)
