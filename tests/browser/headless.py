"""Headless Chromium for the browser tests, the viewer benchmark and the Spark screenshot
(``scripts/bench_viewer.py``, ``scripts/spark_check.py``).

Drives the system's Chromium (Debian's ``chromium`` package, ``/usr/bin/chromium``)
through Playwright's ``executable_path``; nothing is downloaded
(``playwright install`` is never needed).  WebGL runs on SwiftShader, the CPU
implementation Chromium ships, since the flags turn the GPU off.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple

import numpy as np

#: Where Debian (and Ubuntu's deb) put Chromium; ``CHROMIUM`` overrides.
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",  # we run as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # WebGL without a GPU: ANGLE on SwiftShader.
    "--use-gl=angle",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
)


def find_chromium() -> Optional[str]:
    """The Chromium executable to drive, or None if this machine has none."""
    override = os.environ.get("CHROMIUM")
    if override:
        return override if Path(override).is_file() else None
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    return shutil.which("chromium")


@contextlib.contextmanager
def chromium_page(width: int = 800, height: int = 600,
                  log: Optional[Callable[[str], None]] = None) -> Iterator["Page"]:  # noqa: F821
    """A page in a fresh headless Chromium (its own user-data dir, removed afterwards)."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        raise FileNotFoundError("no Chromium found (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="nfsd-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=executable, headless=True, args=list(CHROMIUM_ARGS),
                viewport={"width": width, "height": height})
            try:
                page = context.pages[0] if context.pages else context.new_page()
                if log is not None:
                    page.on("console", lambda message: log(f"console {message.type}: {message.text}"))
                    page.on("pageerror", lambda error: log(f"page error: {error}"))
                yield page
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def screenshot_array(page, path: Optional[Path] = None) -> np.ndarray:  # [H, W, 3] uint8
    """A screenshot of the page as an RGB array (also written to ``path`` if given)."""
    import io

    from PIL import Image

    png = page.screenshot(path=str(path) if path is not None else None)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def color_masks(image: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:  # [H, W, 3] -> 2x [H, W]
    """Strongly red and strongly blue pixels (anti-aliased edges and GUI greys excluded)."""
    r, g, b = (image[..., i].astype(np.int16) for i in range(3))
    red = (r > 150) & (g < 90) & (b < 90)
    blue = (b > 150) & (r < 90) & (g < 90)
    return red, blue


def red_left_blue_right(image: np.ndarray, min_pixels: int = 300) -> Tuple[bool, dict]:
    """Whether red is (almost all) in the left half and blue in the right half of ``image``."""
    red, blue = color_masks(image)
    half = image.shape[1] // 2
    counts = {
        "red_left": int(red[:, :half].sum()), "red_right": int(red[:, half:].sum()),
        "blue_left": int(blue[:, :half].sum()), "blue_right": int(blue[:, half:].sum()),
    }
    ok = (counts["red_left"] >= min_pixels and counts["blue_right"] >= min_pixels
          and counts["red_right"] * 20 <= counts["red_left"]
          and counts["blue_left"] * 20 <= counts["blue_right"])
    return ok, counts


def wait_for_image(page, condition: Callable[[np.ndarray], Tuple[bool, dict]], path: Path,
                   timeout_s: float = 60.0, poll_s: float = 0.5) -> Tuple[bool, dict]:
    """Screenshot every ``poll_s`` until ``condition`` holds or ``timeout_s``; the last one is kept."""
    deadline = time.monotonic() + timeout_s
    while True:
        ok, details = condition(screenshot_array(page, path))
        if ok or time.monotonic() > deadline:
            return ok, details
        time.sleep(poll_s)


def load_in_spark(page, url: str, timeout_s: float = 60.0) -> int:
    """Open ``url`` (the static page, ``viewer/web``) and wait until Spark has parsed the file;
    returns its splat count."""
    page.goto(url)
    return wait_for_spark(page, timeout_s)


def wait_for_spark(page, timeout_s: float = 60.0) -> int:
    """Wait until the page's Spark has loaded its file (``window.splatCount``); returns the count."""
    page.wait_for_function("window.splatCount !== undefined || window.splatError !== undefined",
                           timeout=timeout_s * 1000)
    error = page.evaluate("window.splatError")
    if error:
        raise RuntimeError(f"Spark could not load the file: {error}")
    return int(page.evaluate("window.splatCount"))
