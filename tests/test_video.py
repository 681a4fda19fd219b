"""Turntable videos: cameras, frames from our renderer, mp4/GIF files, the CLI, the run's video."""

import json
from pathlib import Path

import imageio.v2 as imageio
import imageio.v3 as iio
import numpy as np
import pytest
import torch

from browser.scenes import red_blue_blobs
from nfsd_gs.cameras import OrbitSampler
from nfsd_gs.config import CameraConfig, Config, load_config
from nfsd_gs.errors import ConfigError
from nfsd_gs.formats.ply import save_ply
from nfsd_gs.export.video import (TurntableSettings, check_output_config, model_renderer,
                                  render_turntable, turntable_cameras, write_gif, write_mp4)
from nfsd_gs.representations.gaussians import GaussianModel

#: Small enough for the CPU reference rasterizer to take well under a second a frame.
RESOLUTION = 48


def blob_model() -> GaussianModel:
    config = Config()
    return GaussianModel(red_blue_blobs(per_blob=100), config.gaussians, config.render)


def count_frames(path: Path) -> int:
    reader = imageio.get_reader(path)
    try:
        return reader.count_frames()
    finally:
        reader.close()


def red_blue_columns(frame: np.ndarray):  # [H, W, 3] uint8 -> mean column of red, of blue
    r, g, b = (frame[..., i].astype(int) for i in range(3))
    columns = np.arange(frame.shape[1])[None, :].repeat(frame.shape[0], 0)
    red, blue = (r > 128) & (g < 100) & (b < 100), (b > 128) & (r < 100) & (g < 100)
    assert red.sum() > 10 and blue.sum() > 10, "both blobs should be visible"
    return columns[red].mean(), columns[blue].mean()


def test_cameras_make_one_full_turn():
    settings = TurntableSettings(frames=8, elevation_deg=30.0)
    cameras = turntable_cameras(OrbitSampler(CameraConfig()), settings)
    assert len(cameras) == 8
    steps = torch.diff(torch.remainder(cameras.azimuth_deg, 360.0))
    torch.testing.assert_close(steps, torch.full((7,), 45.0))
    torch.testing.assert_close(cameras.elevation_deg, torch.full((8,), 30.0))
    torch.testing.assert_close(cameras.radius, torch.full((8,), CameraConfig().eval_radius))


def test_frames_orbit_the_object():
    """Azimuth 0 looks from +x: red (-y) left of blue (+y); half a turn later, the other way round."""
    cameras = turntable_cameras(OrbitSampler(CameraConfig()), TurntableSettings(frames=4))
    frames = render_turntable(model_renderer(blob_model()), cameras, RESOLUTION,
                              torch.ones(3))
    assert frames.shape == (4, RESOLUTION, RESOLUTION, 3) and frames.dtype == np.uint8
    red_x, blue_x = red_blue_columns(frames[0])
    assert red_x < RESOLUTION / 2 < blue_x
    red_x, blue_x = red_blue_columns(frames[2])
    assert blue_x < RESOLUTION / 2 < red_x


def test_mp4_and_gif_round_trip(tmp_path):
    frames = np.zeros((6, 32, 48, 3), dtype=np.uint8)
    for index, frame in enumerate(frames):  # a red bar moving right (identical GIF frames merge)
        frame[:, 8 * index:8 * index + 8, 0] = 255
    mp4 = write_mp4(tmp_path / "v.mp4", frames, fps=12)
    reader = imageio.get_reader(mp4)
    try:
        assert reader.get_meta_data()["size"] == (48, 32) and reader.get_meta_data()["fps"] == 12
        decoded = np.stack(list(reader.iter_data()))
    finally:
        reader.close()
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 8  # lossy, but close
    gif = iio.imread(write_gif(tmp_path / "v.gif", frames, fps=12))
    assert gif.shape[:3] == (6, 32, 48)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left"


@pytest.mark.parametrize("key, value", [("turntable_frames", 0), ("turntable_resolution", 33),
                                        ("turntable_fps", 0), ("turntable_elevation", 95.0)])
def test_bad_turntable_settings_name_their_key(key, value):
    config = load_config(None, [f"output.{key}={value}"])
    with pytest.raises(ConfigError, match=f"output.{key}"):
        check_output_config(config.output)


def test_render_cli_writes_mp4_and_gif(tmp_path):
    from nfsd_gs.render.__main__ import main

    ply = tmp_path / "blobs.ply"
    save_ply(ply, red_blue_blobs(per_blob=50))
    out = tmp_path / "video" / "spin.mp4"
    assert main([str(ply), "--out", str(out), "--frames", "3", "--resolution", str(RESOLUTION),
                 "--gif", "--no-progress", "--device", "cpu"]) == 0
    assert count_frames(out) == 3
    assert iio.imread(out.with_suffix(".gif")).shape == (3, RESOLUTION, RESOLUTION, 3)


def test_render_cli_names_a_missing_file(tmp_path, capsys):
    from nfsd_gs.render.__main__ import main

    assert main([str(tmp_path / "none.ply")]) == 2
    assert "none.ply" in capsys.readouterr().err


def test_render_cli_refuses_a_folder_as_output_before_rendering(tmp_path, capsys):
    from nfsd_gs.render.__main__ import main

    ply = tmp_path / "blobs.ply"
    save_ply(ply, red_blue_blobs(per_blob=5))
    (tmp_path / "videos").mkdir()
    assert main([str(ply), "--out", str(tmp_path / "videos"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --out {tmp_path / 'videos'}: is a folder; name the video file", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs.ply", "videos"]
    assert not any((tmp_path / "videos").iterdir())


def test_training_run_writes_its_turntable(tmp_path):
    from nfsd_gs.train.__main__ import main

    overrides = ["steps=2", "output.turntable=true", "output.turntable_frames=3",
                 f"output.turntable_resolution={RESOLUTION}", "output.turntable_gif=true"]
    assert main(["--config", "tiny_test", "--no-progress", "--output-root", str(tmp_path),
                 "--prompt", "a red cube", *overrides]) == 0
    (run_dir,) = tmp_path.iterdir()
    assert count_frames(run_dir / "turntable.mp4") == 3
    assert (run_dir / "turntable.gif").is_file() and (run_dir / "model.ply").is_file()
    assert json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 2
