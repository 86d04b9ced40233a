"""How long one 256x256 photo takes through the web page against the command line.

    python benchmarks/ui.py                 # nano-4x, 3 runs of each, interleaved

The page: ``upsampler serve`` in its own process, and headless Chromium (Debian's chromium and
chromedriver, driven by Selenium) that opens it, uploads the photo, clicks Upscale and waits
until the result's size is shown and both images of the comparison are loaded: the time from
the click to then. The first request of a page also loads the model; the next ones find it
loaded. The command line: ``upsampler upscale PHOTO -o OUT --overwrite`` in a fresh process,
wall time, which includes starting Python, importing torch and loading the model, as a user
pays them for each call. The photo is scikit-image's astronaut, shrunk to 256x256 (Lanczos).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

BIN = Path(sys.executable).parent


def _photo(folder: Path) -> Path:
    from skimage import data

    path = folder / "astronaut-256.png"
    Image.fromarray(data.astronaut()).resize((256, 256), Image.LANCZOS).save(path)
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,900")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def _page_run(browser, url: str, photo: Path, expected: str) -> tuple[float, float]:
    """(seconds from the click to the result shown, the upscale's own seconds the page states)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.ID, "upscale"))
    browser.find_element(By.CSS_SELECTOR, "#images input[type=file]").send_keys(str(photo))
    WebDriverWait(browser, 30).until(lambda b: "KB" in b.find_element(By.ID, "images").text)
    started = time.perf_counter()
    browser.find_element(By.ID, "upscale").click()
    WebDriverWait(browser, 600, poll_frequency=0.05).until(
        lambda b: (
            expected in b.find_element(By.ID, "result-info").text
            and all(
                b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)
                for image in b.find_elements(By.CSS_SELECTOR, "#comparison img")
            )
        )
    )
    seconds = time.perf_counter() - started
    info = browser.find_element(By.ID, "result-info").text
    return seconds, float(re.search(r"in ([\d.]+) s", info).group(1))


def _cli_run(photo: Path, output: Path, model: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [BIN / "upsampler", "upscale", photo, "-o", output, "--overwrite", "--model", model],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", default="nano-4x")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        photo = _photo(folder)
        port = _free_port()
        server = subprocess.Popen(
            [BIN / "upsampler", "serve", "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        browser = None
        try:
            line = server.stdout.readline()  # "upsampler page on URL ..." once it listens
            if "page on" not in line:
                raise SystemExit(f"upsampler serve did not start: {line}{server.stdout.read()}")
            url = f"http://127.0.0.1:{port}/"
            browser = _browser()
            page, stated, cli = [], [], []
            for run in range(args.runs + 1):  # run 0: the page's first request loads the model
                seconds, own = _page_run(browser, url, photo, "1024x1024 from 256x256")
                print(f"page run {run}: {seconds:.2f} s (upscale itself {own:.2f} s)", flush=True)
                if run:
                    page.append(seconds)
                    stated.append(own)
                seconds = _cli_run(photo, folder / "out", args.model)
                print(f"cli  run {run}: {seconds:.2f} s", flush=True)
                if run:  # run 0 fills the file-system cache
                    cli.append(seconds)
        finally:
            if browser is not None:
                browser.quit()
            server.terminate()
            server.wait(30)
    load = os.getloadavg()[0]
    print(
        f"\n256x256 -> 1024x1024 with {args.model}, medians of {args.runs} (load average {load:.2f}):\n"
        f"  page, click to result shown:        {statistics.median(page):.2f} s "
        f"(the upscale itself {statistics.median(stated):.2f} s)\n"
        f"  cli, fresh `upsampler upscale` process: {statistics.median(cli):.2f} s"
    )


if __name__ == "__main__":
    main()
