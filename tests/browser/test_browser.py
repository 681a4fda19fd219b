"""The viewers in a real browser: headless Chromium, WebGL on SwiftShader.

Each test shows a red blob at -y and a blue blob at +y; every initial camera
here looks from +x with z up, so red must appear on the left half of the
screenshot and blue on the right half.
"""

import pytest
import torch

from browser.scenes import red_blue_blobs
from nfsd_gs.config import CameraConfig, ViewerConfig
from nfsd_gs.export.ply import save_ply
from nfsd_gs.viewer.headless import red_left_blue_right, wait_for_image

from .conftest import require

pytestmark = pytest.mark.browser

#: SwiftShader renders slowly on 2 cores; a load takes a few seconds.
TIMEOUT_S = 60.0


def check_red_left_blue_right(page, screenshot):
    ok, counts = wait_for_image(page, red_left_blue_right, screenshot, timeout_s=TIMEOUT_S)
    assert ok, (f"expected red on the left and blue on the right, got {counts}; see {screenshot}; "
                f"browser said: {page.console_messages[-10:]}")


def test_live_viewer_shows_the_training_gaussians(page, tmp_path):
    from nfsd_gs.viewer.training import TrainingViewer

    viewer = TrainingViewer(ViewerConfig(port=0), CameraConfig(), tmp_path, total_steps=10)
    try:
        viewer.after_step(1, red_blue_blobs(), {"loss": torch.tensor(0.5)})
        page.goto(viewer.url)
        check_red_left_blue_right(page, tmp_path / "live_viewer.png")
        # Training moves on: swap the colours; the browser must follow.
        swapped = red_blue_blobs()
        swapped["means"][:, 1] *= -1
        viewer.pacer.last_time = -float("inf")
        viewer.after_step(2, swapped, {"loss": torch.tensor(0.4)})
        ok, counts = wait_for_image(page, lambda image: _swapped(image), tmp_path / "live_viewer_2.png",
                                    timeout_s=TIMEOUT_S)
        assert ok, f"the browser did not show the update: {counts}"
    finally:
        viewer.close()


def _swapped(image):
    ok, counts = red_left_blue_right(image[:, ::-1])  # mirrored: red right, blue left
    return ok, counts


def test_ply_viewer_shows_an_exported_file(page, tmp_path):
    from nfsd_gs.viewer.ply_view import serve_ply

    path = tmp_path / "blobs.ply"
    save_ply(path, red_blue_blobs())
    scene = serve_ply(path, port=0)
    try:
        page.goto(scene.url)
        check_red_left_blue_right(page, tmp_path / "ply_viewer.png")
    finally:
        scene.stop()


def test_spark_opens_an_exported_file(page, tmp_path):
    """An independent web renderer (Spark, on three.js, from npm) reads our .ply."""
    from nfsd_gs.viewer.spark_check import WEB_DIR, load_in_spark, serve_spark_page, spark_installed

    require(spark_installed(), f"Spark is not installed (npm ci --prefix {WEB_DIR}; .ci/run does)")
    path = tmp_path / "blobs.ply"
    splats = red_blue_blobs()
    save_ply(path, splats)
    with serve_spark_page(path) as url:
        assert load_in_spark(page, url, timeout_s=TIMEOUT_S) == len(splats["means"])
        check_red_left_blue_right(page, tmp_path / "spark.png")
