"""The viewer without a browser: tensor conversion, pacing, ports, the hook, the CLIs.

The browser itself is in tests/browser/test_browser.py.
"""

import math
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from browser.scenes import red_blue_blobs
from nfsd_gs.config import CameraConfig, ViewerConfig
from nfsd_gs.errors import NfsdError
from nfsd_gs.formats.ply import load_ply, save_ply
from nfsd_gs.viewer.splats import (SH_C0, covariances, rgb_from_sh_dc, rotation_matrices,
                                   splat_cloud)

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- tensors -> splats


def test_rotation_matrices_match_scipy():
    quats = torch.randn(64, 4, dtype=torch.float64) * 3  # unnormalised, wxyz
    expected = Rotation.from_quat(quats[:, [1, 2, 3, 0]].numpy()).as_matrix()  # scipy: xyzw
    np.testing.assert_allclose(rotation_matrices(quats).numpy(), expected, atol=1e-12)


def test_covariance_is_r_s_squared_r_transpose():
    log_scales = torch.randn(32, 3, dtype=torch.float64)
    quats = torch.randn(32, 4, dtype=torch.float64)
    sigma = covariances(log_scales, quats)  # [N, 3, 3]
    torch.testing.assert_close(sigma, sigma.transpose(1, 2))
    eigenvalues = torch.linalg.eigvalsh(sigma)  # ascending
    expected = torch.sort(torch.exp(2 * log_scales), dim=-1).values
    torch.testing.assert_close(eigenvalues, expected, rtol=1e-9, atol=1e-12)
    # The axis of the largest scale is the rotated local axis.
    axis = torch.argmax(log_scales, dim=-1)
    directions = rotation_matrices(quats)[torch.arange(32), :, axis]  # [N, 3] columns
    stretched = torch.einsum("nij,nj->ni", sigma, directions)
    torch.testing.assert_close(stretched, directions * torch.exp(2 * log_scales.max(-1).values)[:, None])


def test_rgb_from_sh_dc_inverts_the_exporters_convention():
    rgb = torch.rand(100, 3)
    torch.testing.assert_close(rgb_from_sh_dc(((rgb - 0.5) / SH_C0)[:, None, :]), rgb)
    assert rgb_from_sh_dc(torch.full((1, 1, 3), 100.0)).max() == 1.0  # clamped


def test_splat_cloud_has_vizers_shapes_and_ranges():
    splats = red_blue_blobs(per_blob=10)
    cloud = splat_cloud(splats)
    n = 20
    assert cloud.centers.shape == (n, 3) and cloud.covariances.shape == (n, 3, 3)
    assert cloud.rgbs.shape == (n, 3) and cloud.opacities.shape == (n, 1)
    assert all(a.dtype == np.float32 for a in (cloud.centers, cloud.covariances, cloud.rgbs,
                                               cloud.opacities))
    np.testing.assert_allclose(cloud.opacities, 1 / (1 + math.exp(-4.0)), rtol=1e-6)
    np.testing.assert_allclose(cloud.rgbs[0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(cloud.covariances[0], np.eye(3) * 0.04 ** 2, rtol=1e-5)


# --------------------------------------------------------------------------- pacing


def test_pacer_waits_for_time_steps_and_publish_cost():
    from nfsd_gs.viewer.training import UpdatePacer

    pacer = UpdatePacer(interval_s=1.0, every_steps=5)
    assert pacer.due(step=1, now=0.0)
    pacer.sent(step=1, now=0.0)
    assert not pacer.due(step=20, now=0.5)  # too soon
    assert not pacer.due(step=3, now=2.0)  # too few steps
    assert pacer.due(step=6, now=2.0)
    assert not pacer.due(step=6, now=2.0, last_cost_s=1.0)  # a 1 s publish: wait 4 s


def test_publisher_sends_only_the_newest_snapshot():
    from nfsd_gs.viewer.training import SnapshotPublisher

    published, gate = [], threading.Event()

    def slow_publish(cloud):
        gate.wait(5)
        published.append(len(cloud))

    publisher = SnapshotPublisher(slow_publish)
    try:
        for per_blob in (1, 2, 3, 4):  # the first is taken at once; 2 and 3 are superseded
            publisher.submit(red_blue_blobs(per_blob=per_blob))
            time.sleep(0.05)
        assert not publisher.idle()
        gate.set()
        assert publisher.wait_idle(5)
    finally:
        publisher.close()
    assert published == [2, 8]


# --------------------------------------------------------------------------- ports


def test_a_busy_port_gives_the_next_free_one():
    from nfsd_gs.viewer.ports import find_free_port

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert find_free_port("127.0.0.1", port) > port


@pytest.mark.parametrize("host", ["256.1.2.3", "192.0.2.1"])  # not an address / not ours
def test_a_host_we_cannot_listen_on_is_a_clear_error(host):
    from nfsd_gs.viewer.ports import find_free_port

    with pytest.raises(NfsdError, match="viewer"):
        find_free_port(host, 8080)


# --------------------------------------------------------------------------- the live viewer


@pytest.fixture
def viewer(tmp_path):
    from nfsd_gs.viewer.training import TrainingViewer

    config = ViewerConfig(port=0, update_interval_s=0.0, stats_interval_s=0.0)
    viewer = TrainingViewer(config, CameraConfig(), tmp_path, total_steps=100)
    yield viewer
    viewer.close()


def test_hook_sends_nothing_while_no_browser_looks(viewer):
    viewer.after_step(1, red_blue_blobs(per_blob=5), {"loss": torch.tensor(1.0)})
    assert viewer.publisher.wait_idle(10) and viewer.publisher.published == 0
    assert viewer.panel.step.value == 1  # the panel is still kept up to date


def test_hook_sends_splats_and_stats(viewer, monkeypatch):
    assert viewer.url.startswith("http://127.0.0.1:")
    monkeypatch.setattr(viewer.scene, "num_clients", lambda: 1)  # as if a browser were open
    viewer.after_step(7, red_blue_blobs(per_blob=50), {"loss": torch.tensor([0.25, 0.75])})
    assert viewer.publisher.wait_idle(10)
    assert viewer.scene._handle.buffer.shape == (100, 8)  # viser: 8 uint32 per Gaussian
    assert viewer.panel.step.value == 7 and viewer.panel.count.value == 100
    assert float(viewer.panel.loss.value) == pytest.approx(0.5)
    with urllib.request.urlopen(viewer.url, timeout=10) as response:  # the web client is served
        assert response.status == 200 and b"<html" in response.read().lower()


def test_pause_blocks_the_loop_and_save_writes_a_ply(viewer, tmp_path):
    splats = red_blue_blobs(per_blob=20)
    viewer.panel.toggle_pause()  # as the Pause button does
    done = threading.Event()
    loop = threading.Thread(target=lambda: (viewer.after_step(3, splats, {"loss": torch.tensor(1.0)}),
                                            done.set()))
    loop.start()
    assert not done.wait(0.5), "after_step returned while paused"
    viewer.panel.save_requested.set()  # the Save button, while paused
    deadline = time.monotonic() + 10
    while not viewer.saved and time.monotonic() < deadline:
        time.sleep(0.05)
    assert viewer.panel.status.value == "saved step_000003.ply"
    viewer.panel.toggle_pause()  # Resume
    assert done.wait(10)
    loop.join()
    assert viewer.saved == [tmp_path / "snapshots" / "step_000003.ply"]
    loaded = load_ply(viewer.saved[0])
    torch.testing.assert_close(loaded["means"], splats["means"])


def test_training_with_viewer_flag_runs_to_the_end(tmp_path, capsys):
    from nfsd_gs.train.__main__ import main

    code = main(["--config", "tiny_test", "--no-progress", "--output-root", str(tmp_path / "out"),
                 "--prompt", "a red cube", "--viewer", "--viewer-port", "0", "steps=4"])
    assert code == 0
    err = capsys.readouterr().err
    assert "viewer: http://127.0.0.1:" in err
    (run_dir,) = (tmp_path / "out").iterdir()
    assert (run_dir / "model.ply").is_file()


def test_training_without_viewer_imports_no_viser(tmp_path):
    script = (
        "import sys\n"
        "from nfsd_gs.train.__main__ import main\n"
        f"assert main(['--config', 'tiny_test', '--no-progress', '--output-root', {str(tmp_path)!r},"
        " '--prompt', 'a cube', 'steps=2']) == 0\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'viser'], 'viser was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=300)


# --------------------------------------------------------------------------- python -m nfsd_gs.view


def test_view_serves_a_ply_written_by_the_exporter(tmp_path):
    from nfsd_gs.viewer.ply_view import serve_ply

    path = tmp_path / "blobs.ply"
    save_ply(path, red_blue_blobs(per_blob=30))
    scene = serve_ply(path, port=0)
    try:
        assert scene._handle.buffer.shape == (60, 8)
        with urllib.request.urlopen(scene.url, timeout=10) as response:
            assert response.status == 200
    finally:
        scene.stop()


def test_view_cli_runs_and_stops(tmp_path):
    path = tmp_path / "blobs.ply"
    save_ply(path, red_blue_blobs(per_blob=5))
    result = subprocess.run([sys.executable, "-m", "nfsd_gs.view", str(path), "--port", "0",
                             "--seconds", "0.5"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "viewer: http://127.0.0.1:" in result.stderr


def test_view_cli_names_a_missing_file(tmp_path):
    result = subprocess.run([sys.executable, "-m", "nfsd_gs.view", str(tmp_path / "none.ply")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "none.ply" in result.stderr


def test_framing_view_keeps_our_camera_and_frames_foreign_scenes():
    from nfsd_gs.viewer.ply_view import framing_view
    from nfsd_gs.viewer.server import OrbitView

    ours = framing_view(splat_cloud(red_blue_blobs(per_blob=50)))
    assert ours == OrbitView(0.0, 15.0, 2.75, 55.0)
    far = red_blue_blobs(per_blob=50)
    far["means"] = far["means"] * 20 + torch.tensor([100.0, 0.0, 0.0])
    framed = framing_view(splat_cloud(far))
    assert framed.look_at[0] == pytest.approx(100.0, abs=5) and framed.radius > 20
    np.testing.assert_allclose(OrbitView(up="+z").position(),
                               [2.75 * math.cos(math.radians(15)), 0, 2.75 * math.sin(math.radians(15))])


# --------------------------------------------------------------------------- python -m nfsd_gs.view --static


def test_static_page_serves_the_page_and_only_the_one_file(tmp_path):
    from nfsd_gs.viewer.static import serve_page

    web = tmp_path / "web"  # a stand-in for viewer/web with its npm builds
    for name in ("index.html", "node_modules/@sparkjsdev/spark/dist/spark.module.js",
                 "node_modules/three/build/three.module.js"):
        (web / name).parent.mkdir(parents=True, exist_ok=True)
        (web / name).write_text(name)
    path = tmp_path / "blobs.ply"
    save_ply(path, red_blue_blobs(per_blob=5))
    (tmp_path / "secret.txt").write_text("not served")
    with serve_page(path, port=0, web_dir=web) as server:
        assert server.url.startswith("http://127.0.0.1:") and "file=%2Ffiles%2Fblobs.ply" in server.url
        root = server.url.split("/index.html")[0]
        with urllib.request.urlopen(server.url, timeout=10) as response:
            assert response.read() == b"index.html"
        with urllib.request.urlopen(root + "/files/blobs.ply", timeout=10) as response:
            assert response.read() == path.read_bytes()
        for other in ("/files/secret.txt", "/files/..%2Fsecret.txt", "/../secret.txt"):
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(root + other, timeout=10)


@pytest.mark.parametrize("name, message", [("none.ply", "no file"), ("model.txt", "opens .ply")])
def test_static_page_refuses_what_it_cannot_open(tmp_path, name, message):
    if name.endswith(".txt"):
        (tmp_path / name).write_text("x")
    result = subprocess.run([sys.executable, "-m", "nfsd_gs.view", str(tmp_path / name), "--static",
                             "--port", "0", "--seconds", "0.1"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr and name in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_viewer_has_one_module_name():
    """nfsd_gs.viewer is a plain subpackage (no package_dir mapping): one file, one name."""
    import nfsd_gs.viewer.server as server

    assert Path(server.__file__).resolve() == REPO / "nfsd_gs" / "viewer" / "server.py"
    assert not (REPO / "viewer" / "__init__.py").exists()
