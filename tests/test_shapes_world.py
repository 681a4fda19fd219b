"""The procedural world: renders match their captions, captions match the trainer's."""

import pytest
import torch

from nfsd_gs.cameras import OrbitSampler, orbit_cameras, view_prompts
from nfsd_gs.config import NFSD_NEGATIVE_PROMPT, CameraConfig
from nfsd_gs.errors import ConfigError
from nfsd_gs.shapeworld.captions import compose_captions, object_prompt, scene_view_prompts, vocabulary
from nfsd_gs.shapeworld.dataset import DataConfig, make_batch, render_views
from nfsd_gs.shapeworld.degrade import DEGRADATIONS, degrade
from nfsd_gs.shapeworld.prior import build_tokenizer
from nfsd_gs.shapeworld.world import (COLOUR_NAMES, COLOURS, SHAPES, Scenes, render_object,
                                         render_scenes, sample_scenes)


def cameras(azimuth, elevation, n=1, radius=2.75, fovy=50.0):
    full = lambda v: torch.full((n,), float(v))  # noqa: E731
    return orbit_cameras(full(azimuth), full(elevation), full(radius), full(fovy))


def alpha_of(shape, azimuth=0.0, elevation=0.0, resolution=64):
    scenes = Scenes(torch.tensor([SHAPES.index(shape)]), torch.tensor([0]), torch.tensor([1.0]),
                    torch.tensor([0.0]))
    _, alpha = render_scenes(scenes, cameras(azimuth, elevation), torch.ones(1, 3), resolution)
    return alpha[0]  # [R, R]


def test_render_shapes_range_and_determinism():
    g = torch.Generator().manual_seed(0)
    cams = OrbitSampler(CameraConfig()).sample(6, g)
    scenes = sample_scenes(6, g)
    bg = torch.rand(6, 3, generator=g)
    rgb, alpha = render_scenes(scenes, cams, bg, 32)
    assert rgb.shape == (6, 32, 32, 3) and alpha.shape == (6, 32, 32)
    assert rgb.min() >= 0 and rgb.max() <= 1
    assert (alpha.flatten(1).max(1).values == 1).all()  # every object is seen
    # the corner is background
    assert torch.allclose(rgb[:, 0, 0], bg, atol=1e-5)
    again, _ = render_scenes(scenes, cams, bg, 32)
    assert torch.equal(rgb, again)


def test_named_colour_is_the_dominant_object_colour():
    albedos = torch.nn.functional.normalize(torch.tensor(list(COLOURS.values())), dim=-1)
    for name in COLOUR_NAMES:
        rgb = render_object("cube", name, cameras(30, 20), background=(1, 1, 1), resolution=32)
        scenes = Scenes(torch.tensor([1]), torch.tensor([0]), torch.tensor([1.0]), torch.tensor([0.0]))
        _, alpha = render_scenes(scenes, cameras(30, 20), torch.ones(1, 3), 32)
        mean = rgb[0][alpha[0] > 0.99].mean(0)  # [3]
        nearest = (torch.nn.functional.normalize(mean, dim=0) @ albedos.T).argmax().item()
        assert COLOUR_NAMES[nearest] == name


def _widths(alpha):  # [R, R] -> covered pixels per row [R]
    return (alpha > 0.5).sum(1)


def test_silhouettes_differ_as_expected():
    for pointed in ("cone", "pyramid"):  # narrower at the top than the bottom (side view)
        w = _widths(alpha_of(pointed))
        rows = w.nonzero()[:, 0]
        top, bottom = w[rows[0] + 2], w[rows[-1] - 2]
        assert top < 0.5 * bottom, pointed
    w = _widths(alpha_of("cylinder"))
    rows = w.nonzero()[:, 0]
    assert abs(int(w[rows[0] + 2]) - int(w[rows[-1] - 2])) <= 2
    sphere = alpha_of("sphere")
    assert torch.allclose(sphere, sphere.flip(0), atol=0.05)
    assert torch.allclose(sphere, sphere.flip(1), atol=0.05)
    torus = alpha_of("torus", elevation=89.0)  # from above: a ring with a hole
    assert torus[32, 32] == 0 and torus[32].max() == 1
    assert alpha_of("torus")[32, 32] == 1  # from the side the hole is hidden
    # a cube seen corner-on is wider than face-on
    assert _widths(alpha_of("cube", azimuth=45)).max() > _widths(alpha_of("cube")).max()


def test_scale_and_bad_input():
    small = Scenes(torch.tensor([0]), torch.tensor([0]), torch.tensor([0.8]), torch.tensor([0.0]))
    big = Scenes(torch.tensor([0]), torch.tensor([0]), torch.tensor([1.2]), torch.tensor([0.0]))
    a_small = render_scenes(small, cameras(0, 0), torch.ones(1, 3), 32)[1].sum()
    a_big = render_scenes(big, cameras(0, 0), torch.ones(1, 3), 32)[1].sum()
    assert a_big > 1.8 * a_small
    with pytest.raises(ConfigError, match="hexagon"):
        render_object("hexagon", "red", cameras(0, 0))
    with pytest.raises(ConfigError, match="mauve"):
        render_object("cone", "mauve", cameras(0, 0))
    with pytest.raises(ConfigError, match="must agree"):
        render_scenes(small, cameras(0, 0, n=2), torch.ones(2, 3), 8)


def test_view_captions_are_the_trainers():
    g = torch.Generator().manual_seed(1)
    config = CameraConfig()
    cams = OrbitSampler(config).sample(16, g)
    scenes = sample_scenes(16, g)
    captions = scene_view_prompts(scenes, cams, config)
    for i, caption in enumerate(captions):
        prompt = object_prompt(SHAPES[scenes.shape[i]], COLOUR_NAMES[scenes.colour[i]])
        assert caption == view_prompts(prompt, cams[i:i + 1], config)[0]


def test_vocabulary_covers_every_caption_and_the_negative_prompt():
    tokenizer = build_tokenizer()
    texts = [NFSD_NEGATIVE_PROMPT, "", "a pink torus, overhead view, low-resolution, gloomy"]
    texts += [f"a {c} {s}, back view" for s in SHAPES for c in COLOUR_NAMES]
    for text in texts:
        ids = tokenizer(text, padding="max_length", max_length=32, truncation=True)["input_ids"]
        assert tokenizer.unk_token_id not in ids, text
        assert tokenizer.eos_token_id in ids, text  # nothing truncated
    assert "view" in vocabulary() and "cone" in vocabulary()


def test_degradations_and_their_words():
    g = torch.Generator().manual_seed(2)
    views = render_views(24, g, "cpu", DataConfig(resolution=32))
    same, words = degrade(views.images, 0.0, g)
    assert torch.equal(same, views.images) and all(w == [] for w in words)
    out, words = degrade(views.images, 1.0, g)
    allowed = {w for _, _, ws in DEGRADATIONS.values() for w in ws}
    assert all(words) and all(set(w) <= allowed for w in words)
    assert all(w in NFSD_NEGATIVE_PROMPT for ws in words for w in ws)
    changed = (out - views.images).abs().flatten(1).amax(1) > 1e-3
    assert changed.all()
    with pytest.raises(ConfigError, match="1.5"):
        degrade(views.images, 1.5, g)


def test_training_batch_captions():
    g = torch.Generator().manual_seed(3)
    config = DataConfig(resolution=32, degrade_probability=0.5, caption_dropout=0.2)
    views = render_views(64, g, "cpu", config)
    batch = make_batch(views, g, config)
    assert batch.images.shape == (64, 3, 32, 32)
    assert "" in batch.captions
    for caption, degraded, view_caption, obj in zip(batch.captions, batch.degraded,
                                                    views.view_captions, views.object_captions):
        if caption and not degraded:
            assert caption in (view_caption, obj)
        if caption and degraded and caption.startswith("a "):
            assert caption.startswith(obj)
    captions = compose_captions(["a red cone, front view"], ["a red cone"], [["blurry", "dark"]],
                                torch.Generator().manual_seed(0), view_probability=1.0,
                                negative_only_probability=0.0, dropout=0.0)
    assert captions == ["a red cone, front view, blurry, dark"]
