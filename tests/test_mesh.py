"""Meshes from Gaussians (export/mesh.py, export/texture.py): a known cube, its silhouettes and
colours, the face budget, the baked texture, bad input, the run option."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from nfsd_gs.cameras import orbit_cameras
from nfsd_gs.errors import ConfigError, NfsdError
from nfsd_gs.score.metrics import delta_e76, srgb_to_lab
from nfsd_gs.export.mesh import (EmptyMeshError, GaussianField, Grid, MeshSettings, export_mesh,
                                 face_budget, gaussians_mesh)
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


#: One colour per face of the cube (+x, -x, +y, -y, +z, -z): a texture bake must put each
#: where it belongs.
FACE_COLOURS = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.1, 0.2, 0.9],
                             [0.9, 0.8, 0.1], [0.8, 0.2, 0.8], [0.1, 0.8, 0.8]])


def six_coloured_cube(per_side: int = 10) -> dict:
    """The cube, each Gaussian coloured by the face of the cube it is nearest to."""
    splats = cube_of_gaussians(per_side)
    axis = splats["means"].abs().argmax(1)  # [N]
    negative = (splats["means"].gather(1, axis[:, None])[:, 0] < 0).long()
    splats["sh0"] = rgb_to_sh0(FACE_COLOURS[2 * axis + negative])[:, None, :]
    return splats


def eight_views():
    """Azimuths 0, 45, ... 315; elevations alternating 30 and -20 degrees; our evaluation radius."""
    azimuth = torch.arange(8) * 45.0
    elevation = torch.tensor([30.0, -20.0] * 4)
    return orbit_cameras(azimuth, elevation, torch.full((8,), 2.75), torch.full((8,), 40.0))


def gaussian_views(splats, cameras):  # -> [8, H, W, 3] float in [0, 1], [8, H, W] bool
    """The Gaussians' own colour (background removed: rgb / alpha) and where alpha > 0.5,
    rendered by the reference rasterizer."""
    rgb, alpha, _, _ = rasterize_gaussians(
        splats["means"], splats["quats"], torch.exp(splats["scales"]),
        torch.sigmoid(splats["opacities"]), splats["sh0"], 0, cameras.world_to_camera,
        cameras.intrinsics(RESOLUTION, RESOLUTION), RESOLUTION, RESOLUTION,
        torch.zeros(len(cameras), 3), backend="reference")
    alpha = alpha[..., 0]
    return (rgb / alpha.clamp(min=1e-6)[..., None]).clamp(0, 1).numpy(), alpha.numpy() > 0.5


def gaussian_silhouettes(splats, cameras) -> np.ndarray:  # [8, H, W] bool
    return gaussian_views(splats, cameras)[1]


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


def textured_views(mesh, cameras):  # -> [8, H, W, 3] float in [0, 1], [8, H, W] bool
    """The textured mesh seen by ``cameras``, by trimesh: a ray per pixel centre (Embree
    through embreex), the face it hits and the hit's barycentrics -> UV -> the texture,
    sampled bilinearly (trimesh's ``uv_to_interpolated_color``); unlit (the albedo)."""
    import trimesh

    directions = cameras.ray_directions(RESOLUTION, RESOLUTION)  # [8, H, W, 3]
    origins = cameras.positions[:, None, None, :].expand_as(directions)
    faces, rays, hits = mesh.ray.intersects_id(origins.reshape(-1, 3).double().numpy(),
                                               directions.reshape(-1, 3).double().numpy(),
                                               multiple_hits=False, return_locations=True)
    bary = trimesh.triangles.points_to_barycentric(mesh.triangles[faces], hits)  # [R, 3]
    uv = (mesh.visual.uv[mesh.faces[faces]] * bary[:, :, None]).sum(1)  # [R, 2]
    image = mesh.visual.material.baseColorTexture
    colour = np.zeros((directions[..., 0].numel(), 3))
    colour[rays] = trimesh.visual.color.uv_to_interpolated_color(uv, image)[:, :3] / 255.0
    covered = np.zeros(len(colour), bool)
    covered[rays] = True
    return colour.reshape(*directions.shape), covered.reshape(directions.shape[:-1])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def colour_errors(ours, theirs, mask) -> list:  # mean Delta E*76 per view over ``mask``
    return [float(delta_e76(srgb_to_lab(torch.as_tensor(a[m])),
                            srgb_to_lab(torch.as_tensor(b[m]))).mean())
            for a, b, m in zip(ours, theirs, mask)]


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


def test_the_face_budget_follows_the_object():
    """Issue 27.10: the budget comes from the object, not a fixed 100k.  A cube of 216
    Gaussians at the default grid (128) gives marching cubes ~10^5 faces; its Gaussians are
    0.048 across, so the budget is area / (sqrt(3)/4 0.048^2) ~ 2,000 faces (the floor), and
    the silhouettes still match the Gaussians' as the full-resolution cube's do (>= 0.9)."""
    splats = cube_of_gaussians(per_side=6)
    mesh = gaussians_mesh(splats, MeshSettings(resolution=96), device="cpu")
    assert len(mesh.faces) <= 2_100, len(mesh.faces)  # fast-simplification lands within ~2 %
    assert len(mesh.split(only_watertight=False)) == 1
    cameras = eight_views()
    ious = [iou(a, b) for a, b in zip(gaussian_silhouettes(splats, cameras),
                                      mesh_silhouettes(mesh, cameras))]
    assert min(ious) >= 0.9, ious
    # the rule itself: edges of one Gaussian scale, within the bounds
    assert face_budget(1.0, 0.01) == round(1.0 / (math.sqrt(3) / 4 * 0.01 ** 2))
    assert face_budget(1e-6, 0.01) == 2_000 and face_budget(100.0, 1e-4) == 200_000


def test_an_explicit_face_budget_overrides_the_rule():
    splats = cube_of_gaussians(per_side=6)
    assert len(gaussians_mesh(splats, MeshSettings(resolution=32, faces=0), device="cpu").faces) > 5_000
    small = gaussians_mesh(splats, MeshSettings(resolution=32, faces=1_000), device="cpu")
    assert 500 < len(small.faces) <= 1_000


@pytest.mark.parametrize("chunk", [None, 97])
def test_the_field_matches_a_direct_sum_over_gaussians(chunk):
    """The splatted field (each Gaussian over its 3-sigma box, in groups padded to their
    largest box; chunk 97: one Gaussian a group) equals the plain formula."""
    generator = torch.Generator().manual_seed(0)
    n = 50
    splats = {"means": torch.rand(n, 3, generator=generator) - 0.5,
              "scales": torch.log(0.02 + 0.08 * torch.rand(n, 3, generator=generator)),
              "quats": torch.randn(n, 4, generator=generator),
              "opacities": torch.randn(n, generator=generator),
              "sh0": torch.zeros(n, 1, 3)}
    field = GaussianField.from_splats(splats, torch.device("cpu"))
    grid = Grid.box(*field.bounds(), 20)
    splatted = field.volume(grid, chunk)
    points = grid.points((0, 0, 0), grid.shape, torch.device("cpu")).double()  # [P, 3]
    offset = points[:, None, :] - field.means.double()  # [P, N, 3]
    maha = torch.einsum("pni,nij,pnj->pn", offset, field.inverse_covariances.double(), offset)
    direct = (torch.exp(-0.5 * maha) * field.opacities.double()).sum(-1).view(grid.shape)
    # beyond 3 sigma a Gaussian is left out: at most exp(-4.5) of its opacity per Gaussian
    assert np.abs(splatted - direct.numpy()).max() < 0.02
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
                 "output.mesh=true", "output.mesh_resolution=24", "output.mesh_iso=0.05",
                 "output.mesh_texture=64"]) == 0
    (run_dir,) = tmp_path.iterdir()
    mesh = trimesh.load(run_dir / "mesh.glb", force="mesh")
    assert len(mesh.faces) > 0 and mesh.visual.material.baseColorTexture.size == (64, 64)
    assert trimesh.Trimesh(mesh.vertices, mesh.faces).is_watertight  # seams merged back


# --------------------------------------------------------------------------- the baked texture

#: Largest mean colour error (Delta E*76, over the pixels both the mesh and the Gaussians cover)
#: any of the 8 views may have.  A correct 128^2 bake measures 3.0-6.8: the texture reproduces
#: each face's colour (Delta E < 1 inside a face), and the error comes from the cube's edges,
#: where the Gaussians blend two faces' colours over about one Gaussian and the mesh's bilinear
#: texture, cut into charts there, does not follow them exactly.  Broken bakes measure 68-125
#: (a flat texture of the mean colour, transposed UVs, UVs upside down: every view > 68).
MAX_VIEW_DELTA_E = 10.0
#: Silhouette IoU per view, the threshold of the untextured cube (the texture does not move it).
MIN_VIEW_IOU = 0.9


@pytest.fixture(scope="module")
def textured_cube(tmp_path_factory):
    """The six-coloured cube's mesh with a 128^2 baked texture, written as .glb and read back."""
    import trimesh

    splats = six_coloured_cube()
    path = tmp_path_factory.mktemp("textured") / "cube.glb"
    made = export_mesh(splats, path, MeshSettings(resolution=40, texture=128), device="cpu")
    return splats, made, trimesh.load(path, force="mesh")


def check_against_the_gaussians(splats, mesh):
    """Per view: silhouette IoU and mean Delta E of the textured mesh against the Gaussians."""
    cameras = eight_views()
    theirs, their_mask = gaussian_views(splats, cameras)
    ours, our_mask = textured_views(mesh, cameras)
    return ([iou(a, b) for a, b in zip(their_mask, our_mask)],
            colour_errors(ours, theirs, their_mask & our_mask))


def test_the_textured_mesh_looks_like_the_gaussians(textured_cube):
    splats, made, mesh = textured_cube
    assert mesh.visual.kind == "texture"
    texture = mesh.visual.material.baseColorTexture
    assert texture.size == (128, 128) and texture.mode == "RGB"
    assert mesh.visual.uv.shape == (len(mesh.vertices), 2) and len(mesh.faces) == len(made.faces)
    assert made.metadata["texture_coverage"] > 0.95  # the views saw (almost) every texel
    ious, errors = check_against_the_gaussians(splats, mesh)
    assert min(ious) >= MIN_VIEW_IOU, ious
    assert max(errors) <= MAX_VIEW_DELTA_E, errors


@pytest.mark.parametrize("broken", ["flat colour", "transposed UVs", "upside-down UVs"])
def test_the_colour_check_notices_a_broken_bake(textured_cube, broken):
    from PIL import Image

    splats, _, mesh = textured_cube
    mesh = mesh.copy()
    if broken == "flat colour":  # the texture's mean colour everywhere
        pixels = np.asarray(mesh.visual.material.baseColorTexture)
        mean = pixels.reshape(-1, 3).mean(0).round().astype(np.uint8)
        mesh.visual.material.baseColorTexture = Image.fromarray(np.tile(mean, (128, 128, 1)))
    elif broken == "transposed UVs":
        mesh.visual.uv = mesh.visual.uv[:, ::-1].copy()
    else:
        mesh.visual.uv = mesh.visual.uv * [1.0, -1.0] + [0.0, 1.0]
    _, errors = check_against_the_gaussians(splats, mesh)
    assert max(errors) > MAX_VIEW_DELTA_E, errors


def test_a_texel_hidden_behind_another_part_takes_nothing_from_that_view():
    """Two plates of Gaussians, red at x = +0.3 and blue at x = -0.3, seen from +x: the red
    plate's front takes red from the view; the blue plate's front, behind the red plate,
    takes nothing (the Gaussians' depth at its pixel is the red plate's, far in front)."""
    from nfsd_gs.export.texture import gather_views, render_views

    axis = torch.linspace(-0.3, 0.3, 13)
    y, z = (t.reshape(-1) for t in torch.meshgrid(axis, axis, indexing="ij"))
    plates = []
    for x, rgb in ((0.3, (0.9, 0.1, 0.1)), (-0.3, (0.1, 0.1, 0.9))):
        plate = cube_of_gaussians(per_side=1, rgb=rgb)
        plates.append({k: v.expand(len(y), *v.shape[1:]).clone() for k, v in plate.items()})
        plates[-1]["means"] = torch.stack([torch.full_like(y, x), y, z], -1)
        plates[-1]["scales"][:] = math.log(0.03)
    splats = {key: torch.cat([plates[0][key], plates[1][key]]) for key in plates[0]}
    cameras = orbit_cameras(torch.zeros(1), torch.zeros(1), torch.full((1,), 2.75),
                            torch.full((1,), 40.0))
    images = render_views(splats, cameras, 64)
    points = torch.tensor([[0.33, 0.0, 0.0], [-0.27, 0.0, 0.0]])  # the plates' fronts
    colour, weight = gather_views(points, torch.tensor([[1.0, 0.0, 0.0]] * 2), images, cameras,
                                  depth_tolerance=0.09)
    assert weight[0] > 0.9 and weight[1] == 0, weight
    assert torch.allclose(colour[0] / weight[0], torch.tensor([0.9, 0.1, 0.1]), atol=0.05)


def test_texture_seams_are_padded():
    """Texels off every chart but next to one take a chart's colour (bilinear filtering and
    mip-maps read them); the rest of the atlas is filled too (no black)."""
    from nfsd_gs.export.texture import pad_charts

    texture = torch.zeros(16, 16, 3)
    filled = torch.zeros(16, 16, dtype=torch.bool)
    filled[4:8, 4:8] = True
    texture[4:8, 4:8] = torch.tensor([1.0, 0.0, 0.0])
    filled[12:14, 12:16] = True
    texture[12:14, 12:16] = torch.tensor([0.0, 0.0, 1.0])
    padded = pad_charts(texture, filled, 2)
    assert torch.equal(padded[filled], texture[filled])  # the charts themselves are kept
    assert torch.allclose(padded[2:10, 2:10], torch.tensor([1.0, 0.0, 0.0]))  # 2 texels around
    assert torch.allclose(padded[10:12, 10:16], torch.tensor([0.0, 0.0, 1.0]))
    assert (padded.sum(-1) > 0.99).all()  # no texel left black


def test_uv_rasterization_covers_each_texel_once():
    """Two triangles making the unit square: every texel centre lies in exactly one, and the
    barycentrics give back the centre's UV."""
    from nfsd_gs.export.texture import rasterize_uv

    uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    face, bary = rasterize_uv(uv, faces, 8)
    assert (face >= 0).all()
    centres = (torch.arange(8) + 0.5) / 8
    expected = torch.stack(torch.meshgrid(1 - centres, centres, indexing="ij"), -1)[..., [1, 0]]
    recovered = (bary[..., :, None] * uv[faces[face]]).sum(-2)  # [8, 8, 2] (u, v); row 0: v = 1
    assert torch.allclose(recovered, expected, atol=1e-6)
    assert (face == 1).sum() == (face == 0).sum() + 8  # the diagonal: the higher face index


@pytest.mark.parametrize("settings, message", [
    (MeshSettings(texture=1000), "config key 'output.mesh_texture': 1000 must be 0"),
    (MeshSettings(texture=32), "config key 'output.mesh_texture': 32 must be 0"),
])
def test_bad_texture_sizes_name_the_key(settings, message):
    with pytest.raises(ConfigError, match=message):
        settings.check()


def test_a_texture_needs_a_glb_and_the_gaussians(tmp_path):
    from nfsd_gs.config import load_config

    with pytest.raises(NfsdError, match=r"textured mesh is written as \.glb"):
        export_mesh(cube_of_gaussians(per_side=4), tmp_path / "cube.obj",
                    MeshSettings(texture=64), device="cpu")
    assert not list(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="output.mesh_texture.*representation=gaussians"):
        load_config(overrides=["representation=nerf", "output.mesh_texture=512"])


@pytest.mark.gpu
def test_the_field_on_cuda_matches_the_cpu():
    splats = cube_of_gaussians(per_side=10)
    cpu = GaussianField.from_splats(splats, torch.device("cpu"))
    cuda = GaussianField.from_splats(splats, torch.device("cuda"))
    grid = Grid.box(*cpu.bounds(), 48)
    np.testing.assert_allclose(cuda.volume(grid), cpu.volume(grid), atol=1e-4)
    mesh = gaussians_mesh(splats, MeshSettings(resolution=40, faces=0), device="cuda")
    assert mesh.is_watertight and len(mesh.split(only_watertight=False)) == 1


@pytest.mark.gpu
def test_the_bake_on_cuda_matches_the_cpu():
    """Same mesh, same views: gsplat's renders bake the texture the reference's do."""
    from nfsd_gs.export.texture import bake_texture

    splats = six_coloured_cube()
    mesh = gaussians_mesh(splats, MeshSettings(resolution=40), device="cpu")
    textures = [np.asarray(bake_texture(mesh, {k: v.to(device) for k, v in splats.items()}, 128,
                                        depth_tolerance=0.05, resolution=128)
                           .visual.material.baseColorTexture, dtype=np.float32)
                for device in ("cpu", "cuda")]
    assert np.abs(textures[0] - textures[1]).mean() < 3.0  # of 255


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


def test_export_cli_writes_a_textured_glb(tmp_path):
    import trimesh

    from nfsd_gs.formats.ply import save_ply

    save_ply(tmp_path / "model.ply", six_coloured_cube(per_side=6))
    result = export_cli(tmp_path / "model.ply", "--mesh", tmp_path / "cube.glb", "--texture", "64",
                        "--mesh-resolution", "24", "--mesh-faces", "auto")
    assert result.returncode == 0, result.stderr
    assert "a 64x64 texture (xatlas atlas, baked from 24 views" in result.stderr, result.stderr
    mesh = trimesh.load(tmp_path / "cube.glb", force="mesh")
    assert mesh.visual.material.baseColorTexture.size == (64, 64)


@pytest.mark.parametrize("args, message", [
    (["--mesh-iso", "100"], "never exceeds the iso level 100"),
    (["--mesh-resolution", "2"], "option --mesh-resolution: 2 must be >= 8"),
    (["--texture", "1000"], "option --mesh-texture: 1000 must be 0 (vertex colours) or a power of two"),
    (["--format", "gltf"], "unknown format 'gltf'"),  # the splat file's error comes first
])
def test_export_cli_bad_mesh_input_is_one_line_and_no_file(tmp_path, args, message):
    from nfsd_gs.formats.ply import save_ply

    save_ply(tmp_path / "model.ply", cube_of_gaussians(per_side=4))
    result = export_cli(tmp_path / "model.ply", "--mesh", tmp_path / "out.glb", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "out.glb").exists()


def test_export_cli_a_textured_obj_is_one_line_and_no_file(tmp_path):
    from nfsd_gs.formats.ply import save_ply

    save_ply(tmp_path / "model.ply", cube_of_gaussians(per_side=4))
    result = export_cli(tmp_path / "model.ply", "--mesh", tmp_path / "out.obj", "--texture", "512")
    assert result.returncode == 2 and "a textured mesh is written as .glb" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ply"]
