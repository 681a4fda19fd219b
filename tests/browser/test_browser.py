"""The viewers in a real browser: headless Chromium, WebGL on SwiftShader.

Each test shows a red blob at -y and a blue blob at +y; every initial camera
here looks from +x with z up, so red must appear on the left half of the
screenshot and blue on the right half.
"""

import threading
import time

import pytest
import torch

from browser.scenes import red_blue_blobs
from nfsd_gs.config import CameraConfig, ViewerConfig
from nfsd_gs.formats.ply import save_ply
from nfsd_gs.viewer.headless import red_left_blue_right, wait_for_image

from .conftest import require

pytestmark = pytest.mark.browser

#: SwiftShader renders slowly on 2 cores; a load takes a few seconds.
TIMEOUT_S = 60.0


def check_red_left_blue_right(page, screenshot):
    ok, counts = wait_for_image(page, red_left_blue_right, screenshot, timeout_s=TIMEOUT_S)
    assert ok, (f"expected red on the left and blue on the right, got {counts}; see {screenshot}; "
                f"browser said: {page.console_messages[-10:]}")


class FakeTrainingLoop:
    """Calls ``viewer.after_step`` every ``period_s`` from a thread, as the training loop does.

    ``splats`` may be swapped while it runs (training moving the Gaussians).
    """

    def __init__(self, viewer, splats, period_s: float = 0.05):
        self.viewer, self.splats, self.period_s = viewer, splats, period_s
        self.step, self.error = 0, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-training", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        if self.error is not None:
            raise self.error

    def _run(self):
        try:
            while not self._stop.is_set():
                self.step += 1
                self.viewer.after_step(self.step, self.splats, {"loss": torch.tensor(1.0 / self.step)})
                time.sleep(self.period_s)
        except Exception as err:  # surfaced in __exit__
            self.error = err


def test_live_viewer_shows_the_training_gaussians(page, tmp_path):
    from nfsd_gs.viewer.training import TrainingViewer

    config = ViewerConfig(port=0, update_interval_s=0.25, stats_interval_s=0.25)
    viewer = TrainingViewer(config, CameraConfig(), tmp_path, total_steps=10_000)
    try:
        with FakeTrainingLoop(viewer, red_blue_blobs()) as loop:
            page.goto(viewer.url)  # the browser connects while training runs
            check_red_left_blue_right(page, tmp_path / "live_viewer.png")
            # Training moves on: mirror the scene; the browser must follow.
            swapped = red_blue_blobs()
            swapped["means"][:, 1] *= -1
            loop.splats = swapped
            ok, counts = wait_for_image(page, _swapped, tmp_path / "live_viewer_2.png",
                                        timeout_s=TIMEOUT_S)
            assert ok, f"the browser did not show the update: {counts}"
        assert viewer.publisher.published >= 2
        assert int(viewer.panel.step.value) > 1 and viewer.panel.count.value == 800
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
