"""Meshes from Gaussians (export/mesh.py): a known cube, its silhouettes, bad input, the run option."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from nfsd_gs.cameras import orbit_cameras
from nfsd_gs.errors import NfsdError
from nfsd_gs.export.mesh import (EmptyMeshError, GaussianField, Grid, MeshSettings, export_mesh,
                                 gaussians_mesh)
from nfsd_gs.render.rasterize import rasterize_gaussians
from nfsd_gs.render.sh import rgb_to_sh0

#: The bundled world's cube (shapeworld.world.sdf_cube): half-size 0.29.
CUBE_HALF = 0.29
RESOLUTION = 64  # silhouette image size


def cube_of_gaussians(per_side: int = 12, rgb=(0.9, 0.1, 0.1)) -> dict:
    """Isotropic Gaussians on a lattice filling the bundled world's cube, in gsplat's layout."""
    spacing = 2 * CUBE_HALF / per_side
    axis = torch.linspace(-CUBE_HALF + spacing / 2, CUBE_HALF - spacing / 2, per_side)
    means = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).view(-1, 3)  # [N, 3]
    n = len(means)
    return {"means": means,
            "scales": torch.full((n, 3), math.log(0.5 * spacing)),
            "quats": torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1),
            "opacities": torch.full((n,), 3.0),  # sigmoid: 0.95
            "sh0": rgb_to_sh0(torch.tensor(rgb).repeat(n, 1))[:, None, :],
            "shN": torch.zeros(n, 0, 3)}


def eight_views():
    """Azimuths 0, 45, ... 315; elevations alternating 30 and -20 degrees; our evaluation radius."""
    azimuth = torch.arange(8) * 45.0
    elevation = torch.tensor([30.0, -20.0] * 4)
    return orbit_cameras(azimuth, elevation, torch.full((8,), 2.75), torch.full((8,), 40.0))


def gaussian_silhouettes(splats, cameras) -> np.ndarray:  # [8, H, W] bool
    """Alpha > 0.5 of the Gaussians, rendered by the reference rasterizer."""
    _, alpha, _, _ = rasterize_gaussians(
        splats["means"], splats["quats"], torch.exp(splats["scales"]),
        torch.sigmoid(splats["opacities"]), splats["sh0"], 0, cameras.world_to_camera,
        cameras.intrinsics(RESOLUTION, RESOLUTION), RESOLUTION, RESOLUTION,
        torch.ones(len(cameras), 3), backend="reference")
    return alpha[..., 0].numpy() > 0.5


def mesh_silhouettes(mesh, cameras) -> np.ndarray:  # [8, H, W] bool
    """The union of the mesh's projected triangles (every vertex lies in front of the cameras)."""
    vertices = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32)
    masks = []
    for view, K in zip(cameras.world_to_camera, cameras.intrinsics(RESOLUTION, RESOLUTION)):
        camera = vertices @ view[:3, :3].T + view[:3, 3]  # [V, 3]
        pixels = (camera @ K.T)[:, :2] / camera[:, 2:]  # [V, 2], pixel edges at integers
        image = Image.new("1", (RESOLUTION, RESOLUTION))
        draw = ImageDraw.Draw(image)
        for triangle in pixels.numpy()[np.asarray(mesh.faces)] - 0.5:  # PIL: pixel centres at integers
            draw.polygon([tuple(p) for p in triangle], fill=1)
        masks.append(np.asarray(image, dtype=bool))
    return np.stack(masks)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_the_cube_mesh_has_the_gaussians_silhouettes_and_is_closed(tmp_path):
    import trimesh

    splats = cube_of_gaussians()
    path = tmp_path / "cube.glb"
    export_mesh(splats, path, MeshSettings(resolution=40, faces=0), device="cpu")
    mesh = trimesh.load(path, force="mesh")
    assert mesh.is_watertight and len(mesh.split(only_watertight=False)) == 1
    assert mesh.volume > 0  # faces point outwards
    cameras = eight_views()
    ious = [iou(a, b) for a, b in zip(gaussian_silhouettes(splats, cameras),
                                      mesh_silhouettes(mesh, cameras))]
    assert min(ious) >= 0.9, ious
    colors = np.asarray(mesh.visual.vertex_colors)[:, :3].astype(int)
    assert np.abs(colors - [230, 26, 26]).max() <= 3  # (0.9, 0.1, 0.1) * 255, from the SH DC


def test_the_silhouette_check_notices_a_wrong_mesh():
    """A cube 10 % too large fails the IoU bound that the real mesh passes."""
    import trimesh

    splats = cube_of_gaussians()
    cameras = eight_views()
    wrong = trimesh.creation.box(extents=[2 * CUBE_HALF * 1.1] * 3)
    ious = [iou(a, b) for a, b in zip(gaussian_silhouettes(splats, cameras),
                                      mesh_silhouettes(wrong, cameras))]
    assert min(ious) < 0.9, ious


def test_only_the_main_component_is_kept_and_decimation_meets_the_budget():
    splats = cube_of_gaussians(per_side=8)
    floater = cube_of_gaussians(per_side=3)
    floater["means"] = floater["means"] * 0.3 + torch.tensor([0.8, 0.0, 0.0])  # a small blob apart
    both = {k: torch.cat([splats[k], floater[k]]) for k in splats}
    alone = gaussians_mesh(floater, MeshSettings(resolution=20, faces=0), device="cpu")
    assert alone.bounds[0][0] > 0.5  # on its own, the floater has a surface
    full = gaussians_mesh(both, MeshSettings(resolution=40, faces=0), device="cpu")
    assert full.bounds[1][0] < 0.5  # the floater is gone
    budget = len(full.faces) // 4
    small = gaussians_mesh(both, MeshSettings(resolution=40, faces=budget), device="cpu")
    assert len(small.faces) <= budget and len(small.faces) > budget // 2
    assert len(small.split(only_watertight=False)) == 1
    assert len(small.visual.vertex_colors) == len(small.vertices)


def test_the_field_matches_a_direct_sum_over_gaussians():
    """The blocked, culled quadratic-form evaluation equals the plain formula."""
    generator = torch.Generator().manual_seed(0)
    n = 50
    splats = {"means": torch.rand(n, 3, generator=generator) - 0.5,
              "scales": torch.log(0.02 + 0.08 * torch.rand(n, 3, generator=generator)),
              "quats": torch.randn(n, 4, generator=generator),
              "opacities": torch.randn(n, generator=generator),
              "sh0": torch.zeros(n, 1, 3)}
    field = GaussianField.from_splats(splats, torch.device("cpu"))
    grid = Grid.box(*field.bounds(), 20)
    blocked = grid.sample(field.density, torch.device("cpu"), block=7)
    points = grid.points((0, 0, 0), grid.shape, torch.device("cpu")).double()  # [P, 3]
    offset = points[:, None, :] - field.means.double()  # [P, N, 3]
    maha = torch.einsum("pni,nij,pnj->pn", offset, field.inverse_covariances.double(), offset)
    direct = (torch.exp(-0.5 * maha) * field.opacities.double()).sum(-1).view(grid.shape)
    # beyond 3 sigma a Gaussian is left out: at most exp(-4.5) of its opacity per Gaussian
    assert np.abs(blocked - direct.numpy()).max() < 0.02
    assert direct.max() > 0.5


def test_an_empty_field_is_one_clear_error_and_no_file(tmp_path):
    splats = cube_of_gaussians(per_side=4)
    splats["opacities"][:] = -3.0  # sigmoid: 0.047, the sum stays under 0.5
    path = tmp_path / "empty.glb"
    with pytest.raises(EmptyMeshError, match="iso level 0.5"):
        export_mesh(splats, path, device="cpu")
    assert not path.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("settings, key", [(MeshSettings(resolution=4), "resolution"),
                                           (MeshSettings(iso=0.0), "iso"),
                                           (MeshSettings(faces=2), "faces")])
def test_bad_settings_name_the_key(settings, key):
    with pytest.raises(NfsdError, match=f"config key 'output.mesh_{key}'"):
        settings.check()


def test_an_unknown_mesh_format_is_refused_before_any_work(tmp_path):
    with pytest.raises(NfsdError, match=r"\.stl"):
        export_mesh(cube_of_gaussians(per_side=4), tmp_path / "cube.stl", device="cpu")


def test_a_run_with_output_mesh_writes_mesh_glb(tmp_path):
    import trimesh

    from nfsd_gs.train.__main__ import main

    assert main(["--config", "tiny_test", "--no-progress", "--output-root", str(tmp_path),
                 "--prompt", "a red cube", "steps=2", "output.turntable=false",
                 "output.mesh=true", "output.mesh_resolution=24", "output.mesh_iso=0.05"]) == 0
    (run_dir,) = tmp_path.iterdir()
    mesh = trimesh.load(run_dir / "mesh.glb", force="mesh")
    assert len(mesh.faces) > 0 and mesh.is_watertight


@pytest.mark.gpu
def test_the_field_on_cuda_matches_the_cpu():
    splats = cube_of_gaussians(per_side=10)
    cpu = GaussianField.from_splats(splats, torch.device("cpu"))
    cuda = GaussianField.from_splats(splats, torch.device("cuda"))
    grid = Grid.box(*cpu.bounds(), 48)
    np.testing.assert_allclose(cuda.volume(grid), cpu.volume(grid), atol=1e-4)
    mesh = gaussians_mesh(splats, MeshSettings(resolution=40, faces=0), device="cuda")
    assert mesh.is_watertight and len(mesh.split(only_watertight=False)) == 1


# --------------------------------------------------------------------------- python -m nfsd_gs.export --mesh


def export_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nfsd_gs.export", *map(str, args)],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True,
                          text=True, timeout=300)


def test_export_cli_writes_a_mesh_from_a_run_folder(tmp_path):
    import trimesh

    from nfsd_gs.formats.ply import save_ply

    run = tmp_path / "run"
    run.mkdir()
    save_ply(run / "model.ply", cube_of_gaussians(per_side=8))
    result = export_cli(run, "--mesh", tmp_path / "cube.obj", "--mesh-resolution", "24")
    assert result.returncode == 0, result.stderr
    mesh = trimesh.load(tmp_path / "cube.obj", force="mesh")
    assert mesh.is_watertight and len(mesh.faces) > 100
    assert sorted(p.name for p in run.iterdir()) == ["model.ply"]  # no splat file besides


@pytest.mark.parametrize("args, message", [
    (["--mesh-iso", "100"], "never exceeds the iso level 100"),
    (["--mesh-resolution", "2"], "option --mesh-resolution: 2 must be >= 8"),
    (["--format", "gltf"], "unknown format 'gltf'"),  # the splat file's error comes first
])
def test_export_cli_bad_mesh_input_is_one_line_and_no_file(tmp_path, args, message):
    from nfsd_gs.formats.ply import save_ply

    save_ply(tmp_path / "model.ply", cube_of_gaussians(per_side=4))
    result = export_cli(tmp_path / "model.ply", "--mesh", tmp_path / "out.glb", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "out.glb").exists()
