"""The viewers in a real browser: headless Chromium, WebGL on SwiftShader.

Each test shows a red blob at -y and a blue blob at +y; every initial camera
here looks from +x with z up, so red must appear on the left half of the
screenshot and blue on the right half.
"""

import base64
import threading
import time

import pytest
import torch

from browser.headless import load_in_spark, red_left_blue_right, wait_for_image, wait_for_spark
from browser.scenes import red_blue_blobs
from nfsd_gs.config import CameraConfig, ViewerConfig
from nfsd_gs.formats.ply import save_ply

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


def require_page():
    from nfsd_gs.viewer.static import WEB_DIR, page_installed

    require(page_installed(), f"Spark is not installed (npm ci --prefix {WEB_DIR}; .ci/run does)")


@pytest.mark.parametrize("format", ["ply", "ply-compressed", "splat", "spz"])
def test_static_page_opens_an_exported_file_by_url(page, tmp_path, format):
    """The static page (viewer/web, Spark on three.js from npm) reads each file we write, given
    as ?file=, and draws it."""
    from nfsd_gs.formats import format_suffix, save_splats
    from nfsd_gs.viewer.static import serve_page

    require_page()
    path = tmp_path / f"blobs{format_suffix(format)}"
    splats = red_blue_blobs()
    save_splats(path, splats, format)
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    with serve_page(path, port=0, radius=2.75) as server:
        assert load_in_spark(page, server.url, timeout_s=TIMEOUT_S) == len(splats["means"])
        check_red_left_blue_right(page, tmp_path / f"spark_{format}.png")
        # everything the page loaded came from our server (it works offline), and nothing was missing
        root = server.url.split("/index.html")[0] + "/"
        assert requested and all(u.startswith((root, "blob:", "data:")) for u in requested), requested
        assert not [m for m in page.console_messages if "console error" in m], page.console_messages


def test_static_page_opens_a_dropped_file(page, tmp_path):
    """A file dropped on the page (no ?file=) is read in the browser and drawn."""
    from nfsd_gs.viewer.static import serve_page

    require_page()
    path = tmp_path / "dropped.ply"
    splats = red_blue_blobs(per_blob=300)
    save_ply(path, splats)
    with serve_page(path, port=0, radius=2.75) as server:
        page.goto(server.url.split("?")[0] + "?radius=2.75")  # the empty page
        page.wait_for_function("document.querySelector('canvas') !== null")
        page.evaluate("""async (url) => {
            const bytes = await (await fetch(url)).arrayBuffer();
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "dropped.ply"));
            window.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true }));
        }""", "/files/dropped.ply")
        assert wait_for_spark(page, TIMEOUT_S) == len(splats["means"])
        check_red_left_blue_right(page, tmp_path / "dropped.png")


def drop_bytes(page, name: str, data: bytes) -> None:
    """Drop a file ``name`` holding ``data`` on the page, as a user dragging it in would."""
    page.evaluate("window.splatCount = undefined")  # the page resets it only once it has the bytes
    page.evaluate("""([name, encoded]) => {
        const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name));
        window.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true }));
    }""", [name, base64.b64encode(data).decode()])


def test_a_unit_object_after_a_framed_scene_is_seen_from_our_camera_again(page, tmp_path):
    """Without ?radius, a scene away from the origin is framed; a unit object dropped after it
    is shown from the default orbit around the origin, not from the old scene's framing."""
    from nfsd_gs.viewer.static import serve_page

    require_page()
    unit, away = tmp_path / "unit.ply", tmp_path / "away.ply"
    splats = red_blue_blobs(per_blob=300)
    save_ply(unit, splats)
    save_ply(away, {**splats, "means": splats["means"] + torch.tensor([0.0, 0.0, 3.0])})
    with serve_page(unit, port=0) as server:
        page.goto(server.url.split("?")[0])  # the empty page, no radius
        page.wait_for_function("document.querySelector('canvas') !== null")
        drop_bytes(page, "away.ply", away.read_bytes())
        assert wait_for_spark(page, TIMEOUT_S) == len(splats["means"])
        drop_bytes(page, "unit.ply", unit.read_bytes())
        assert wait_for_spark(page, TIMEOUT_S) == len(splats["means"])
        check_red_left_blue_right(page, tmp_path / "unit_after_away.png")
