"""The NeRF backend on the CPU: hash grid, volume rendering, optimization, mesh export, end to end."""

import math

import numpy as np
import pytest
import torch

from nfsd_gs.cameras import orbit_cameras
from nfsd_gs.config import NerfConfig, load_config
from nfsd_gs.errors import ConfigError
from nfsd_gs.representations.hashgrid import HashGrid, level_resolutions, spatial_hash
from nfsd_gs.representations.nerf import NerfField
from nfsd_gs.representations.volume import camera_rays, composite, intersect_sphere

@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine, 2 threads contend and run ~30x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


TINY = dict(num_levels=4, features_per_level=2, log2_table_size=12, base_resolution=4,
            max_resolution=32, hidden_dim=16, feature_dim=7, samples_per_ray=24,
            occupancy_resolution=16, mesh_resolution=32)
TINY_OVERRIDES = [f"nerf.{k}={v}" for k, v in TINY.items()]


def tiny_field(**changes) -> NerfField:
    torch.manual_seed(0)
    return NerfField(NerfConfig(**{**TINY, **changes}))


def cameras(n: int = 2):
    azimuth = torch.arange(n, dtype=torch.float32) * (360.0 / n)
    full = lambda v: torch.full((n,), float(v))  # noqa: E731
    return orbit_cameras(azimuth, full(15.0), full(2.75), full(50.0))


# --------------------------------------------------------------------------- hash grid


def test_level_resolutions_grow_geometrically():
    res = level_resolutions(16, 16, 2048)
    assert res[0] == 16 and res[-1] == 2048 and all(a < b for a, b in zip(res, res[1:]))
    with pytest.raises(ConfigError, match="nerf.base_resolution"):
        level_resolutions(4, 64, 32)


def test_spatial_hash_is_instant_ngp_formula():
    v = torch.tensor([[3, 5, 7]])
    expected = (3 * 1 ^ 5 * 2654435761 ^ 7 * 805459861) % 2 ** 10
    assert int(spatial_hash(v, 2 ** 10)) == expected


def test_hash_grid_is_trilinear_inside_a_cell():
    """Features of a single dense level are exactly the trilinear blend of the cell's 8 corners."""
    grid = HashGrid(num_levels=1, features_per_level=1, log2_table_size=10,
                    base_resolution=4, max_resolution=4)
    with torch.no_grad():  # vertex (i, j, k) of the 5^3 lattice stores i + 10 j + 100 k
        ijk = torch.stack(torch.meshgrid(*[torch.arange(5)] * 3, indexing="ij"), -1).view(-1, 3)
        rows = ijk[:, 0] + 5 * (ijk[:, 1] + 5 * ijk[:, 2])
        grid.level_table(0)[rows, 0] = (ijk[:, 0] + 10 * ijk[:, 1] + 100 * ijk[:, 2]).float()
    x = torch.rand(64, 3)
    # A trilinear blend of a linear function reproduces it.
    expected = 4 * (x[:, 0] + 10 * x[:, 1] + 100 * x[:, 2])
    torch.testing.assert_close(grid(x)[:, 0], expected, rtol=1e-5, atol=1e-3)


def test_hash_grid_is_continuous_across_cells():
    grid = HashGrid(num_levels=3, log2_table_size=8, base_resolution=4, max_resolution=64,
                    init_scale=1.0)
    boundary = torch.tensor([[0.25, 0.4, 0.6]])  # a cell face of every level
    eps = torch.tensor([[1e-5, 0.0, 0.0]])
    torch.testing.assert_close(grid(boundary - eps), grid(boundary + eps), atol=1e-3, rtol=0)
    assert grid(torch.rand(10, 3)).shape == (10, 6)


def per_corner_reference(grid: HashGrid, x: torch.Tensor) -> torch.Tensor:  # [N, 3] -> [N, L*F]
    """The encoding written corner by corner: an [L, N, 8, 3] tensor of the cells' corners,
    each indexed densely or by ``spatial_hash`` (the form before the per-axis broadcasting)."""
    corners_bits = torch.tensor([[c >> 2 & 1, c >> 1 & 1, c & 1] for c in range(8)])  # [8, 3]
    scales = torch.tensor(grid.resolutions, dtype=torch.float32)[:, None, None]  # [L, 1, 1]
    scaled = x.clamp(0, 1)[None] * scales
    cell = torch.floor(scaled).clamp(max=scales - 1)
    frac = scaled - cell
    corners = cell.long()[:, :, None, :] + corners_bits  # [L, N, 8, 3]
    rows = []
    for level, n in enumerate(grid.resolutions):
        v = corners[level]
        if level < grid.dense_levels:
            rows.append(v[..., 0] + (n + 1) * (v[..., 1] + (n + 1) * v[..., 2]))
        else:
            rows.append(spatial_hash(v, grid.table_size))
    offsets = torch.tensor([sum(grid.level_sizes[:level]) for level in range(grid.num_levels)])
    rows = torch.stack(rows) + offsets[:, None, None]  # [L, N, 8]
    weights = torch.where(corners_bits.bool(), frac[:, :, None, :], 1 - frac[:, :, None, :]).prod(-1)
    features = grid.table[rows.view(-1)].view(grid.num_levels, len(x), 8, -1)
    return (weights[..., None] * features).sum(2).permute(1, 0, 2).reshape(len(x), -1)


@pytest.mark.parametrize("log2_table_size, max_resolution", [(16, 256), (10, 64), (24, 32)])
def test_hash_grid_equals_its_corner_by_corner_form_bit_for_bit(log2_table_size, max_resolution):
    """The per-axis broadcasting (1.7x faster on the CPU) changes no value and no gradient."""
    grid = HashGrid(num_levels=8, features_per_level=2, log2_table_size=log2_table_size,
                    base_resolution=8, max_resolution=max_resolution, init_scale=1.0)
    assert 0 < grid.dense_levels <= 8
    x = torch.rand(4096, 3, generator=torch.Generator().manual_seed(0))
    x[:8] = torch.tensor([0.0, 1.0, 0.5])  # the cube's faces: the clamped top cell
    ours, theirs = grid(x), per_corner_reference(grid, x)
    assert torch.equal(ours, theirs)
    weights = torch.randn_like(ours)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), grid.table)
    (grad_theirs,) = torch.autograd.grad((theirs * weights).sum(), grid.table)
    assert torch.equal(grad_ours, grad_theirs)


def test_hash_grid_stores_only_learnable_rows():
    """A dense level holds its (N+1)^3 vertices, a hashed one T rows (tiny-cuda-nn's sizing)."""
    grid = HashGrid(num_levels=16, features_per_level=2, log2_table_size=19,
                    base_resolution=16, max_resolution=2048)
    rows = sum(min(2 ** 19, (n + 1) ** 3) for n in grid.resolutions)
    assert grid.table.shape == (rows, 2)
    assert rows < 0.75 * 16 * 2 ** 19  # the 5 dense levels used 2.6 M rows for 0.33 M vertices
    assert [grid.level_table(l).shape[0] for l in (0, 15)] == [17 ** 3, 2 ** 19]


def test_nerf_toggle_on_the_default_config_checkpoints_small():
    """The bundled-prior preset sizes the NeRF for its 64x64 renders: the field, its Adam
    moments and occupancy grid, as the trainer saves them, stay near 20 MB (they were 202 MB)."""
    import io

    config = load_config("default", ["representation=nerf"])
    field = NerfField.from_config(config, torch.device("cpu"))
    optimizers = field.make_optimizers()
    sum(p.sum() for p in field.parameters()).backward()
    for optimizer in optimizers.values():
        optimizer.step()
    buffer = io.BytesIO()
    torch.save({"model": field.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in optimizers.items()}}, buffer)
    parameters = sum(p.numel() for p in field.parameters())
    assert parameters < 2_000_000
    # Adam keeps two moments per parameter: 3 float32 copies, plus the 1.3 MB occupancy grid
    assert buffer.tell() < 3 * 4 * parameters + 2_000_000 < 25_000_000


# --------------------------------------------------------------------------- volume rendering


def test_rays_pass_through_pixel_centres_and_depth_is_camera_z():
    cams = cameras(1)
    origins, dirs = camera_rays(cams, 8, 6)
    assert origins.shape == dirs.shape == (1, 6, 8, 3)
    torch.testing.assert_close(origins[0, 0, 0], cams.positions[0])
    # Points o + t d land at camera depth t and project to pixel centres.
    points = origins + 2.0 * dirs
    homog = torch.cat([points, torch.ones_like(points[..., :1])], -1)
    cam = (cams.world_to_camera[0] @ homog.view(-1, 4).T).T[:, :3]
    torch.testing.assert_close(cam[:, 2], torch.full((48,), 2.0), atol=1e-5, rtol=0)
    pixels = (cams.intrinsics(8, 6)[0] @ (cam / cam[:, 2:]).T).T[:, :2]
    torch.testing.assert_close(pixels[0], torch.tensor([0.5, 0.5]), atol=1e-4, rtol=0)


def test_sphere_intersection():
    o = torch.tensor([[0.0, 0.0, -3.0], [0.0, 2.0, -3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    near, far, hit = intersect_sphere(o, d, 1.0)
    assert hit.tolist() == [True, False]
    torch.testing.assert_close(near[0], torch.tensor(2.0))
    torch.testing.assert_close(far[0], torch.tensor(4.0))


def test_composite_matches_closed_form():
    sigma = torch.tensor([[0.0, 2.0, 1e4]])
    rgb = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]])
    t = torch.tensor([[1.0, 2.0, 3.0]])
    color, opacity, depth = composite(sigma, rgb, t, torch.full((1, 3), 0.5))
    a1 = 1 - math.exp(-1.0)
    torch.testing.assert_close(color[0], torch.tensor([0.0, a1, 1 - a1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(opacity[0, 0], torch.tensor(1.0))
    torch.testing.assert_close(depth[0, 0], torch.tensor(2 * a1 + 3 * (1 - a1)), atol=1e-5, rtol=0)


def test_render_shapes_alpha_depth_and_background():
    field = tiny_field()
    bg = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    with torch.no_grad():
        out = field.render(cameras(2), 12, 10, bg)
    assert out.rgb.shape == (2, 10, 12, 3) and out.alpha.shape == out.depth.shape == (2, 10, 12, 1)
    assert all(torch.isfinite(x).all() for x in (out.rgb, out.alpha, out.depth))
    assert out.alpha.min() >= 0 and out.alpha.max() <= 1
    assert out.alpha[:, 5, 6].min() > 0.9  # the initial blob fills the centre
    assert out.alpha[:, 0, 0].max() < 0.05  # corners miss it and show the background
    torch.testing.assert_close(out.rgb[:, 0, 0], bg, atol=0.05, rtol=0)
    centre = out.depth[:, 5, 6, 0]  # the blob's sigma = 5 surface sits near radius 0.25
    assert ((centre > 2.75 - 0.5) & (centre < 2.75)).all()


def test_gradients_reach_grid_and_mlps():
    field = tiny_field()
    out = field.render(cameras(2), 8, 8, torch.ones(2, 3))
    (out.rgb.mean() + out.alpha.mean()).backward()
    for name, p in field.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_occupancy_grid_and_chunking_do_not_change_the_image():
    field = tiny_field()
    cams, bg = cameras(2), torch.rand(2, 3)
    with torch.no_grad():
        full = field.render(cams, 10, 10, bg)
        field.refresh_occupancy()
        assert 0 < field.occupancy.occupied.float().mean() < 0.5
        field.config.chunk_rays = 7
        skipped = field.render(cams, 10, 10, bg)
    torch.testing.assert_close(skipped.rgb, full.rgb, atol=2e-3, rtol=0)


def test_coarse_phase_renders_low_and_upsamples():
    field = tiny_field(coarse_steps=10, coarse_resolution=8)
    field.update(0, 20, field.make_optimizers())
    out = field.render(cameras(1), 16, 16, torch.ones(1, 3))
    assert out.rgb.shape == (1, 16, 16, 3) and out.info["render_resolution"] == (8, 8)
    with torch.no_grad():  # snapshots and turntables stay at full resolution
        assert field.render(cameras(1), 16, 16, torch.ones(1, 3)).info["render_resolution"] == (16, 16)


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for flag in (False, True):
        field = tiny_field(gradient_checkpointing=flag, chunk_rays=20)
        torch.manual_seed(1)
        field.render(cameras(1), 8, 8, torch.ones(1, 3)).rgb.sum().backward()
        grads.append(field.encoding.table.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_optimizers_and_state_dict_round_trip():
    field = tiny_field()
    optimizers = field.make_optimizers()
    assert set(optimizers) == {"grid", "mlp"}
    assert optimizers["grid"].defaults["eps"] == 1e-15
    field.refresh_occupancy()
    other = tiny_field()
    other.load_state_dict(field.state_dict())
    with torch.no_grad():
        a = field.render(cameras(1), 6, 6, torch.ones(1, 3)).rgb
        b = other.render(cameras(1), 6, 6, torch.ones(1, 3)).rgb
    torch.testing.assert_close(a, b)
    assert torch.equal(other.occupancy.occupied, field.occupancy.occupied)


def test_bad_config_names_the_key():
    with pytest.raises(ConfigError, match="nerf.samples_per_ray"):
        load_config(None, ["nerf.samples_per_ray=0"])
    with pytest.raises(ConfigError, match="nerf.bound_radius"):
        NerfField.from_config(load_config(None, ["representation=nerf", "nerf.bound_radius=5.0"]),
                              torch.device("cpu"))


# --------------------------------------------------------------------------- mesh export


def fit_sphere(field: NerfField, radius: float, steps: int) -> None:
    """Regress log-density to a solid ball of ``radius`` (sigma 30 inside, ~0 outside)."""
    optimizer = torch.optim.Adam(field.parameters(), lr=2e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = (torch.rand(1024, 3, generator=generator) * 2 - 1) * 0.9
        target = torch.where(x.norm(dim=-1) < radius, 30.0, 1e-2)
        loss = (torch.log1p(field.density(x)) - torch.log1p(target)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_mesh_export_of_a_fitted_sphere(tmp_path):
    import trimesh

    from nfsd_gs.formats.ply import load_ply

    field = tiny_field(blob_density=0.0, log2_table_size=14)
    fit_sphere(field, radius=0.6, steps=300)
    path = field.export(tmp_path)
    assert path == tmp_path / "mesh.ply" and (tmp_path / "mesh.obj").is_file()
    mesh = trimesh.load(path, process=True)
    assert mesh.is_watertight
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(np.median(radii) - 0.6) < 0.06 and mesh.volume > 0
    assert mesh.visual.vertex_colors.shape == (len(mesh.vertices), 4)
    splats = load_ply(tmp_path / "model.ply")
    assert splats["means"].shape == (len(mesh.vertices), 3)


# --------------------------------------------------------------------------- end to end


def test_tiny_run_with_the_nerf_backend(tmp_path):
    from nfsd_gs.train.__main__ import main

    args = ["--config", "tiny_test", "--prompt", "a red cube", "--no-progress",
            "--output-root", str(tmp_path), "representation=nerf", "steps=3",
            "output.snapshot_every=3", "output.checkpoint_every=2", "camera.resolution=16",
            "nerf.occupancy_update_every=2", "output.turntable=true", "output.turntable_frames=2",
            "output.turntable_resolution=16", *TINY_OVERRIDES]
    assert main(args) == 0
    (run_dir,) = tmp_path.iterdir()
    for name in ("mesh.ply", "mesh.obj", "turntable.mp4", "config.yaml", "snapshots/step_000003.png"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "checkpoints").iterdir())
    # Resuming restores the field, its occupancy grid and both Adam states.
    assert main(["--resume", str(run_dir), "--no-progress"]) == 0
    assert (run_dir / "metrics.jsonl").read_text().count("\n") == 3
