"""The page of ``upsampler serve`` in a real browser: headless Chromium, driven by Selenium
through Debian's chromedriver, opens the page, uploads a photo, clicks Upscale, waits for the
before/after comparison and checks the size the page shows.

``make test`` installs Debian's ``chromium`` and ``chromium-driver`` when they are missing. A
browser that cannot start fails this test: it never skips. With ``UPSAMPLER_UI_SCREENSHOT=PATH``
the screenshot is also copied to PATH (the README's is made so: see docs/ui.md).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest
from PIL import Image

from upsampler.ui.app import Page
from upsampler.ui.jobs import ModelShelf

PHOTO = Path(__file__).resolve().parents[1] / "examples" / "images" / "skyline.png"
INSTALL = "apt-get install chromium chromium-driver (make test does it)"
# Gradio's queue calls pandas in ways pandas 3 deprecates: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail(f"no chromium / chromedriver on PATH: {INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,900")
    try:
        # The driver's path is given, so Selenium Manager downloads nothing.
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except Exception as error:
        pytest.fail(f"headless Chromium did not start ({error}); {INSTALL}")
    yield driver
    driver.quit()


@pytest.fixture
def page(one_thread):
    page = Page(ModelShelf([]), max_pixels=4_000_000)  # the built-in models
    page.launch(port=_free_port())
    yield page
    page.close()


def test_the_page_upscales_a_photo_in_a_browser(page, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with Image.open(PHOTO) as photo:
        expected = f"{photo.width * 4}x{photo.height * 4} from {photo.width}x{photo.height}"

    browser.get(page.blocks.local_url)
    WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.ID, "upscale"))
    assert browser.title == "upsampler"
    browser.find_element(By.CSS_SELECTOR, "#images input[type=file]").send_keys(str(PHOTO))
    # Uploaded: the file's row shows its name (stem and suffix apart) and size.
    WebDriverWait(browser, 30).until(
        lambda b: (
            PHOTO.stem in b.find_element(By.ID, "images").text
            and "KB" in b.find_element(By.ID, "images").text
        )
    )
    started = time.perf_counter()
    browser.find_element(By.ID, "upscale").click()
    WebDriverWait(browser, 300).until(
        lambda b: expected in b.find_element(By.ID, "result-info").text
    )
    seconds = time.perf_counter() - started
    # The comparison: the slider's two images, both loaded.
    images = browser.find_elements(By.CSS_SELECTOR, "#comparison img")
    assert len(images) == 2
    WebDriverWait(browser, 30).until(
        lambda b: all(
            b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)
            for image in images
        )
    )
    assert "skyline_4x" in browser.find_element(By.ID, "download").text
    print(f"page upscale of {PHOTO.name}: {seconds:.2f} s from click to result")

    screenshot = tmp_path / "ui.png"
    assert browser.save_screenshot(str(screenshot))
    with Image.open(screenshot) as shot:
        assert shot.size[0] >= 1000
    if os.environ.get("UPSAMPLER_UI_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["UPSAMPLER_UI_SCREENSHOT"])
