"""Starting points -> initial Gaussians (nfsd_gs/init/)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from nfsd_gs.cameras import orbit_cameras
from nfsd_gs.config import load_config
from nfsd_gs.errors import ConfigError, PlyFormatError, PriorLoadError, PromptError
from nfsd_gs.formats.ply import save_ply
from nfsd_gs.init import C0, build_point_cloud, initial_splats
from nfsd_gs.init.gaussians import gaussians_from_points, mean_neighbour_distance
from nfsd_gs.init.points import PointCloud, axes_to_world, to_world
from nfsd_gs.init.primitives import PRIMITIVES
from nfsd_gs.init.shap_e import SHAP_E_FRONT, SHAP_E_UP

RED, BLUE, GREEN = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)


def init_config(*overrides: str):
    return load_config("tiny_test", list(overrides)).init


def check_splats(splats: dict, n: int, sh_degree: int = 0) -> None:
    k = (sh_degree + 1) ** 2
    shapes = {"means": (n, 3), "scales": (n, 3), "quats": (n, 4), "opacities": (n,),
              "sh0": (n, 1, 3), "shN": (n, k - 1, 3)}
    assert {key: tuple(v.shape) for key, v in splats.items()} == shapes
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in splats.values())


# ----------------------------------------------------------------------------- kinds


@pytest.mark.parametrize("kind", PRIMITIVES)
def test_each_primitive_from_cli_keys(kind):
    config = init_config(f"init.kind={kind}", "init.radius=0.7")
    splats = initial_splats(config, sh_degree=1)
    check_splats(splats, config.num_points, sh_degree=1)
    radii = splats["means"].norm(dim=-1)
    assert radii.max() == pytest.approx(0.7, rel=1e-4)  # fitted into init.radius
    centre = (splats["means"].min(0).values + splats["means"].max(0).values) / 2
    assert centre.abs().max() < 1e-5
    torch.testing.assert_close(splats["quats"], torch.tensor([[1.0, 0, 0, 0]]).expand(200, 4))
    assert torch.allclose(splats["opacities"], torch.tensor(math.log(0.1 / 0.9)))


def test_sphere_fills_the_ball_with_random_colours():
    cloud = build_point_cloud(init_config("init.kind=sphere"))
    assert (cloud.positions.norm(dim=-1) < 0.25).sum() > 5  # volume, not only the shell
    assert cloud.colors.std(0).min() > 0.2


def test_primitive_colour_size_and_fill():
    cloud = build_point_cloud(init_config("init.kind=box", "init.color=[1,0,0]",
                                          "init.size=[2,1,0.5]", "init.fill=volume"))
    assert torch.equal(cloud.colors, torch.tensor([RED]).expand(len(cloud), 3))
    extent = cloud.positions.max(0).values - cloud.positions.min(0).values
    assert extent[0] / extent[1] == pytest.approx(2.0, rel=0.1)
    assert extent[1] / extent[2] == pytest.approx(2.0, rel=0.1)
    cone = build_point_cloud(init_config("init.kind=cone")).positions
    top, bottom = cone[:, 2] > 0.3, cone[:, 2] < -0.2
    assert cone[top, :2].norm(dim=-1).max() < cone[bottom, :2].norm(dim=-1).max()  # apex is up


def test_bad_kind_and_paths():
    with pytest.raises(ConfigError, match="init.kind"):
        init_config("init.kind=dodecahedron")
    with pytest.raises(ConfigError, match="init.path"):
        init_config("init.kind=file")
    with pytest.raises(ConfigError, match="does not exist"):
        initial_splats(init_config("init.kind=file", "init.path=/no/such.ply"), 0)
    with pytest.raises(ConfigError, match="init.up_axis"):
        init_config("init.up_axis=w")


def test_unsupported_suffix(tmp_path):
    (tmp_path / "cloud.xyz").write_text("0 0 0\n")
    with pytest.raises(ConfigError, match="unsupported type"):
        initial_splats(init_config("init.kind=file", f"init.path={tmp_path / 'cloud.xyz'}"), 0)


# ----------------------------------------------------------------------------- conversion


def test_scales_from_three_nearest_neighbours():
    spacing = 0.1
    grid = torch.stack(torch.meshgrid(*[torch.arange(4.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    cloud = PointCloud(grid * spacing, torch.full((64, 3), 0.25))
    splats = gaussians_from_points(cloud, initial_opacity=0.3, scale_factor=2.0, sh_degree=2)
    check_splats(splats, 64, sh_degree=2)
    # Every grid point has at least 3 neighbours at exactly one spacing.
    torch.testing.assert_close(splats["scales"], torch.full((64, 3), math.log(2 * spacing)))
    torch.testing.assert_close(splats["sh0"], torch.full((64, 1, 3), (0.25 - 0.5) / C0))
    assert torch.equal(splats["shN"], torch.zeros(64, 8, 3))
    torch.testing.assert_close(torch.sigmoid(splats["opacities"]), torch.full((64,), 0.3))


def test_neighbour_distance_irregular_and_degenerate():
    points = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 3], [10, 10, 10]])
    expected0 = (1 + 2 + 3) / 3
    assert mean_neighbour_distance(points)[0].item() == pytest.approx(expected0)
    assert torch.isfinite(mean_neighbour_distance(torch.zeros(5, 3)).log()).all()  # duplicates
    assert mean_neighbour_distance(torch.zeros(1, 3)).shape == (1,)


def test_growth_count_and_distance():
    config = init_config("init.kind=box", "init.grow_points=37", "init.grow_radius=0.05")
    cloud = build_point_cloud(config)
    assert len(cloud) == 200 + 37
    original, grown = cloud.positions[:200], cloud.positions[200:]
    nearest = torch.cdist(grown, original).min(dim=1).values
    assert nearest.max() <= 0.05 * 2 * config.radius + 1e-6
    check_splats(initial_splats(config, 0), 237)


def test_growth_is_off_by_default_and_colour_jitter():
    assert len(build_point_cloud(init_config("init.kind=sphere"))) == 200
    plain = build_point_cloud(init_config("init.kind=box", "init.color=[0.5,0.5,0.5]"))
    jittered = build_point_cloud(init_config("init.kind=box", "init.color=[0.5,0.5,0.5]",
                                             "init.color_jitter=0.1"))
    assert torch.equal(plain.positions, jittered.positions)
    assert 0.05 < (jittered.colors - 0.5).std() < 0.15
    assert jittered.colors.min() >= 0 and jittered.colors.max() <= 1


def test_axes_to_world():
    gltf = axes_to_world("y", "z")  # glTF: y up, +z front
    torch.testing.assert_close(gltf @ torch.tensor([0.0, 0, 1]), torch.tensor([1.0, 0, 0]))
    torch.testing.assert_close(gltf @ torch.tensor([0.0, 1, 0]), torch.tensor([0.0, 0, 1]))
    assert torch.linalg.det(gltf).item() == pytest.approx(1.0)
    assert torch.equal(axes_to_world("z", "x"), torch.eye(3))
    with pytest.raises(ConfigError, match="perpendicular"):
        axes_to_world("y", "-y")


# ----------------------------------------------------------------------------- files


def write_point_cloud_ply(path: Path, positions: np.ndarray, colors_u8: np.ndarray) -> Path:
    from plyfile import PlyData, PlyElement

    table = np.empty(len(positions), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"),
                                            ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for i, axis in enumerate("xyz"):
        table[axis] = positions[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        table[channel] = colors_u8[:, i]
    PlyData([PlyElement.describe(table, "vertex")]).write(str(path))
    return path


def test_point_cloud_ply_file(tmp_path):
    rng = np.random.default_rng(0)
    positions = rng.normal(size=(500, 3)).astype(np.float32)
    path = write_point_cloud_ply(tmp_path / "pc.ply", positions,
                                 np.tile([255, 0, 0], (500, 1)).astype(np.uint8))
    config = init_config("init.kind=file", f"init.path={path}")
    cloud = build_point_cloud(config)
    assert len(cloud) == 200  # subsampled to init.num_points
    torch.testing.assert_close(cloud.colors, torch.tensor([RED]).expand(200, 3))
    assert cloud.positions.norm(dim=-1).max() == pytest.approx(config.radius, rel=1e-4)
    check_splats(initial_splats(config, 0), 200)


def colored_box(center, color, extents=(1.0, 1.0, 1.0)):
    box = trimesh.creation.box(extents=extents)
    box.apply_translation(center)
    rgba = np.array([*[int(255 * c) for c in color], 255], np.uint8)
    box.visual.vertex_colors = np.tile(rgba, (len(box.vertices), 1))
    return box


def front_back_scene() -> trimesh.Scene:
    """glTF axes (y up, +z front): red box in front, blue behind, green on top."""
    scene = trimesh.Scene()
    scene.add_geometry(colored_box((0, 0, 1.0), RED), geom_name="front")
    scene.add_geometry(colored_box((0, 0, -1.0), BLUE), geom_name="back")
    scene.add_geometry(colored_box((0, 1.0, 0), GREEN, (0.5, 0.5, 0.5)), geom_name="top")
    return scene


@pytest.mark.parametrize("suffix", [".glb", ".obj", ".ply"])
def test_mesh_file_colours_and_axes(tmp_path, suffix):
    path = tmp_path / f"scene{suffix}"
    front_back_scene().export(str(path))
    config = init_config("init.kind=file", f"init.path={path}", "init.num_points=600")
    cloud = build_point_cloud(config)
    assert len(cloud) == 600
    red = (cloud.colors[:, 0] > 0.9) & (cloud.colors[:, 2] < 0.1)
    blue = (cloud.colors[:, 2] > 0.9) & (cloud.colors[:, 0] < 0.1)
    green = (cloud.colors[:, 1] > 0.9) & (cloud.colors[:, 0] < 0.1)
    assert red.sum() > 100 and blue.sum() > 100 and green.sum() > 10
    x, z = cloud.positions[:, 0], cloud.positions[:, 2]
    assert (x[red] > 0).all() and (x[blue] < 0).all()  # glTF +z front -> world +x
    assert z[green].min() > z[red].max() - 1e-5  # glTF +y up -> world +z


def test_explicit_axes_override(tmp_path):
    path = tmp_path / "scene.glb"
    front_back_scene().export(str(path))
    # Pretend the file is z-up with -z front: then "red" (+z) is up in the world.
    cloud = build_point_cloud(init_config("init.kind=file", f"init.path={path}",
                                          "init.up_axis=z", "init.front_axis=-y"))
    red = cloud.colors[:, 0] > 0.9
    assert cloud.positions[red, 2].mean() > 0.2


def test_corrupt_mesh_files_are_one_line_errors(tmp_path):
    (tmp_path / "bad.glb").write_bytes(b"glTF\x02\x00\x00\x00garbage")
    with pytest.raises(ConfigError, match="init.path"):
        initial_splats(init_config("init.kind=file", f"init.path={tmp_path / 'bad.glb'}"), 0)
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 9\n"
                                       b"property float x\nend_header\n\x00\x00")
    with pytest.raises(PlyFormatError, match="truncated"):
        initial_splats(init_config("init.kind=file", f"init.path={tmp_path / 'bad.ply'}"), 0)


def test_gaussian_ply_file_is_loaded_as_is(tmp_path):
    g = torch.Generator().manual_seed(0)
    splats = {"means": torch.randn(9, 3, generator=g) * 3, "scales": torch.randn(9, 3, generator=g),
              "quats": torch.randn(9, 4, generator=g), "opacities": torch.randn(9, generator=g),
              "sh0": torch.randn(9, 1, 3, generator=g), "shN": torch.randn(9, 3, 3, generator=g)}
    save_ply(tmp_path / "model.ply", splats)
    loaded = initial_splats(init_config("init.kind=file", f"init.path={tmp_path / 'model.ply'}"), 1)
    for key in splats:
        assert torch.equal(loaded[key], splats[key]), key
    padded = initial_splats(init_config("init.kind=file", f"init.path={tmp_path / 'model.ply'}"), 2)
    assert padded["shN"].shape == (9, 8, 3) and torch.equal(padded["shN"][:, :3], splats["shN"])


def test_build_representation_uses_the_prior():
    from nfsd_gs.representations import build_representation

    config = load_config("tiny_test", ["init.kind=torus"])
    model = build_representation(config, torch.device("cpu"))
    assert model.num_primitives == 200


# ----------------------------------------------------------------------------- alignment


def project(points: torch.Tensor, cameras) -> torch.Tensor:  # [N, 3] -> [N, 3] (u, v, depth)
    camera = (cameras.world_to_camera[0, :3, :3] @ points.T).T + cameras.world_to_camera[0, :3, 3]
    K = cameras.intrinsics(64, 64)[0]
    uv = (K @ camera.T).T
    return torch.cat([uv[:, :2] / uv[:, 2:], camera[:, 2:]], dim=1)


def front_camera(azimuth: float = 0.0):
    one = lambda v: torch.tensor([float(v)])  # noqa: E731
    return orbit_cameras(one(azimuth), one(0.0), one(3.0), one(50.0))


def test_front_camera_sees_the_front_of_a_gltf_file(tmp_path):
    path = tmp_path / "scene.glb"
    front_back_scene().export(str(path))
    config = init_config("init.kind=file", f"init.path={path}", "init.num_points=800")
    cloud = build_point_cloud(config)
    red, blue, green = (cloud.colors[:, i] > 0.9 for i in (0, 2, 1))
    projected = project(cloud.positions, front_camera())
    assert projected[red, 2].max() < projected[blue, 2].min()  # red is nearer
    assert projected[green, 1].mean() < projected[red, 1].mean()  # green is up (smaller v)
    behind = project(cloud.positions, front_camera(180.0))
    assert behind[blue, 2].max() < behind[red, 2].min()


def test_front_render_is_red(tmp_path):
    render = pytest.importorskip("nfsd_gs.render")
    path = tmp_path / "scene.glb"
    front_back_scene().export(str(path))
    config = init_config("init.kind=file", f"init.path={path}", "init.num_points=1500",
                         "init.initial_opacity=0.95", "init.scale_factor=1.5")
    s = initial_splats(config, 0)
    images = []
    for azimuth in (0.0, 180.0):
        cameras = front_camera(azimuth)
        rgb, alpha, _, _ = render.rasterize_gaussians(
            s["means"], s["quats"], s["scales"].exp(), torch.sigmoid(s["opacities"]),
            torch.cat([s["sh0"], s["shN"]], 1), 0, cameras.world_to_camera,
            cameras.intrinsics(32, 32), 32, 32, torch.ones(1, 3), backend="reference")
        images.append(rgb[0, 12:20, 12:20].mean(dim=(0, 1)))  # centre patch [3]
    front, back = images
    assert front[0] > 0.6 and front[2] < 0.3, front
    assert back[2] > 0.6 and back[0] < 0.3, back


# ----------------------------------------------------------------------------- Shap-E


def test_shap_e_convention_matches_diffusers_cameras():
    """Shap-E's first pan camera (its front view) must land on our front camera's side (+x)."""
    from diffusers.pipelines.shap_e.camera import create_pan_cameras

    cameras = create_pan_cameras(8)
    origin = PointCloud(cameras.origin[:1], torch.zeros(1, 3))
    down = PointCloud(cameras.y[:1], torch.zeros(1, 3))  # image "down" axis
    world_origin = to_world(origin, SHAP_E_UP, SHAP_E_FRONT).positions[0]
    world_down = to_world(down, SHAP_E_UP, SHAP_E_FRONT).positions[0]
    assert world_origin[0] > 0 and world_origin[1].abs() < 1e-5  # on +x (above it)
    assert world_down[2] < -0.8  # image down is world -z: z up


def cube_edge_corners(edge: int):
    """Corners (bit index dx + 2 dy + 4 dz) joined by edge ``edge`` in diffusers' MeshDecoder
    numbering: edges 4a..4a+3 run along axis a, offset (j & 1, j >> 1) on the other two axes."""
    axis, j = divmod(edge, 4)
    others = [b for b in range(3) if b != axis]
    start = (j & 1) << others[0] | (j >> 1) << others[1]
    return start, start | 1 << axis


def marching_cubes_table(max_triangles: int = 5):
    """cases [256, 5, 3] (edge indices) and masks [256, 5], generated: for every corner
    pattern, crossed edges are joined face by face (ambiguous faces separate the inside
    corners), the resulting loops are fan-triangulated.  Orientation is not needed here."""
    cases = torch.zeros(256, max_triangles, 3, dtype=torch.long)
    masks = torch.zeros(256, max_triangles, dtype=torch.bool)
    edges = [cube_edge_corners(e) for e in range(12)]
    for pattern in range(256):
        inside = [bool(pattern >> c & 1) for c in range(8)]
        crossed = {e for e, (p, q) in enumerate(edges) if inside[p] != inside[q]}
        links = {e: [] for e in crossed}
        for axis in range(3):
            for side in (0, 1):
                face = [c for c in range(8) if (c >> axis & 1) == side]
                face_edges = [e for e in crossed if set(edges[e]) <= set(face)]
                if len(face_edges) == 2:
                    pairs = [face_edges]
                else:  # 0 or 4: join the two edges around each inside corner
                    pairs = [[e for e in face_edges if c in edges[e]] for c in face if inside[c]]
                for a, b in (pair for pair in pairs if len(pair) == 2):
                    links[a].append(b)
                    links[b].append(a)
        triangles, seen = [], set()
        for start in sorted(crossed):
            if start in seen:
                continue
            loop, previous, current = [start], None, start
            seen.add(start)
            while True:
                following = [e for e in links[current] if e != previous and e not in seen]
                if not following:
                    break
                previous, current = current, following[0]
                loop.append(current)
                seen.add(current)
            triangles += [(loop[0], loop[i], loop[i + 1]) for i in range(1, len(loop) - 1)]
        for index, triangle in enumerate(triangles[:max_triangles]):
            cases[pattern, index] = torch.tensor(triangle)
            masks[pattern, index] = True
    return cases, masks


def tiny_shap_e_pipeline():
    """ShapEPipeline from tiny random components, like diffusers' own fast tests."""
    from diffusers import HeunDiscreteScheduler, PriorTransformer, ShapEPipeline
    from diffusers.pipelines.shap_e import ShapERenderer
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from nfsd_gs.utils.tokenizer import word_tokenizer

    torch.manual_seed(0)
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(
        bos_token_id=2, eos_token_id=3, pad_token_id=0, hidden_size=32, projection_dim=32,
        intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=50,
        max_position_embeddings=32))
    prior = PriorTransformer(
        num_attention_heads=2, attention_head_dim=16, embedding_dim=32, num_embeddings=32,
        embedding_proj_dim=32, time_embed_dim=128, num_layers=1, clip_embed_dim=64,
        additional_embeddings=0, time_embed_act_fn="gelu", norm_in_type="layer",
        encoder_hid_proj_type=None, added_emb_type=None)
    renderer = ShapERenderer(param_shapes=((8, 93), (8, 8), (8, 8), (8, 8)), d_latent=32,
                             d_hidden=8, n_output=12, background=(0.1, 0.1, 0.1))
    with torch.no_grad():  # an SDF positive everywhere: marching cubes closes it at the box
        renderer.mlp.mlp[-1].weight[0] = 0.0
        renderer.mlp.mlp[-1].bias[0] = 1.0
        # The marching-cubes lookup table is data shipped with the real weights (zeros here).
        cases, masks = marching_cubes_table()
        renderer.mesh_decoder.cases.copy_(cases)
        renderer.mesh_decoder.masks.copy_(masks)
    scheduler = HeunDiscreteScheduler(beta_schedule="exp", num_train_timesteps=1024,
                                      prediction_type="sample", use_karras_sigmas=True,
                                      clip_sample=True, clip_sample_range=1.0)
    return ShapEPipeline(prior=prior, text_encoder=text_encoder,
                         tokenizer=word_tokenizer(["a", "red", "cone"]),
                         shap_e_renderer=renderer, scheduler=scheduler)


@pytest.fixture(scope="module")
def shap_e_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shap_e")
    tiny_shap_e_pipeline().save_pretrained(folder)
    return folder


def test_shap_e_from_a_tiny_random_pipeline(shap_e_folder):
    config = load_config("tiny_test", [
        "init.kind=shap_e", f"init.shap_e_model={shap_e_folder}", "init.local_files_only=true",
        "init.shap_e_steps=1", "init.shap_e_grid_size=12", "init.radius=0.6", "init.num_points=300",
        "init.grow_points=20"])
    splats = initial_splats(config.init, sh_degree=1, prompt="a red cone")
    check_splats(splats, 320, sh_degree=1)
    means = splats["means"]
    original = means[:300]
    assert original.norm(dim=-1).max() == pytest.approx(0.6, rel=1e-4)
    # The mesh is Shap-E's whole [-1, 1]^3 box (bevelled by marching cubes): centred, equal sides.
    half_sides = original.abs().max(0).values  # [3]
    torch.testing.assert_close(half_sides, half_sides.mean().expand(3), rtol=0.01, atol=0)
    assert 0.6 / math.sqrt(3) < half_sides.mean() < 0.6
    rgb = splats["sh0"][:, 0] * C0 + 0.5
    assert rgb.min() >= 0 and rgb.max() <= 1


def test_shap_e_needs_a_prompt(shap_e_folder):
    config = init_config("init.kind=shap_e", f"init.shap_e_model={shap_e_folder}")
    with pytest.raises(PromptError, match="prompt"):
        initial_splats(config, 0, prompt="  ")


def test_shap_e_missing_model_names_the_fallbacks(tmp_path):
    config = init_config("init.kind=shap_e", f"init.shap_e_model={tmp_path / 'missing'}",
                         "init.local_files_only=true")
    with pytest.raises(PriorLoadError) as info:
        initial_splats(config, 0, prompt="a red cone")
    message = str(info.value)
    assert "\n" not in message and "init.kind=sphere" in message and "missing" in message


def test_shap_e_from_a_hub_without_network_is_one_line_at_once(tmp_path, monkeypatch):
    """Issue 27: no network is said at once, with what to download (no retries)."""
    import time

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = init_config("init.kind=shap_e", "init.shap_e_model=openai/shap-e")
    start = time.monotonic()
    with pytest.raises(PriorLoadError) as info:
        initial_splats(config, 0, prompt="a red cone")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "\n" not in message and "`hf download openai/shap-e --local-dir shap-e`" in message
    assert "init.shap_e_model=/path/to/shap-e" in message
