"""The procedural world: renders match their captions, captions match the trainer's."""

import pytest
import torch

from nfsd_gs.cameras import OrbitSampler, orbit_cameras, view_prompts
from nfsd_gs.config import NFSD_NEGATIVE_PROMPT, CameraConfig
from nfsd_gs.errors import ConfigError, PromptError
from nfsd_gs.shapeworld.captions import compose_captions, object_prompt, scene_view_prompts, vocabulary
from nfsd_gs.shapeworld.dataset import DataConfig, make_batch, render_views
from nfsd_gs.shapeworld.degrade import DEGRADATIONS, degrade
from nfsd_gs.shapeworld.prior import build_tokenizer
from nfsd_gs.shapeworld.vocabulary import (EVAL_SPECS, SPLITS, ObjectSpec, eval_prompts,
                                           object_prompt as spec_prompt, parse_prompt,
                                           split_prompts, split_specs)
from nfsd_gs.shapeworld.world import (ACCENT_COLOURS, COLOUR_NAMES, COLOURS, MUTED_COLOURS,
                                      PALETTE, PATTERNS, SHAPES, SOLID_COLOURS, Scenes,
                                      object_scenes, render_object, render_scenes, render_spec,
                                      sample_scenes)


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
    """The captions of known objects from known cameras, written out: the views DreamFusion's
    rule names (front within 45 degrees of azimuth 0, back within 45 of 180, overhead above
    60 degrees of elevation, side otherwise), the article before a vowel, the accent."""
    parts = [object_scenes("cone", "red", 1), object_scenes("pyramid", "orange", 1),
             object_scenes("cube", "brown", 1, accent="yellow", pattern="top"),
             object_scenes("torus", "olive", 1, accent="black", pattern="band"),
             object_scenes("sphere", "blue", 1), object_scenes("cylinder", "green", 1)]
    azimuths = torch.tensor([10.0, 90.0, -170.0, -44.0, 200.0, 0.0])
    elevations = torch.tensor([15.0, 0.0, 30.0, -10.0, 45.0, 61.0])
    cams = orbit_cameras(azimuths, elevations, torch.full((6,), 2.75), torch.full((6,), 50.0))
    assert scene_view_prompts(Scenes.cat(parts), cams, CameraConfig()) == [
        "a red cone, front view",
        "an orange pyramid, side view",
        "a brown cube with a yellow top, back view",
        "an olive torus with a black band, front view",
        "a blue sphere, back view",  # 200 degrees is -160
        "a green cylinder, overhead view",
    ]
    assert view_prompts("a red cone", cams[:2], CameraConfig()) == [
        "a red cone, front view", "a red cone, side view"]
    assert object_prompt("cone", "orange") == "an orange cone"


def test_vocabulary_covers_every_caption_and_the_negative_prompt():
    tokenizer = build_tokenizer()
    texts = [NFSD_NEGATIVE_PROMPT, "", "a pink torus, overhead view, low-resolution, gloomy"]
    texts += [f"{p}, back view" for split in SPLITS for p in split_prompts(split)]
    texts += ["An Orange Cone!", "a violet torus", "a slate cube with a grey-blue stripe"]
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
    # only clean images lose their caption: "" means a clean image of the world
    assert not any(c == "" and d for c, d in zip(batch.captions, batch.degraded.tolist()))
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


# ---------------------------------------------------------------------------- two-tone split


def test_two_tone_top_is_the_accent_from_above_and_the_body_below():
    spec = ObjectSpec("cube", "brown", "yellow", "top")
    rgb, alpha = render_spec(spec, cameras(0, 89.0), torch.ones(1, 3), 64)
    centre = rgb[0, 28:36, 28:36].reshape(-1, 3)  # the top face, seen from overhead
    assert (alpha[0, 28:36, 28:36] == 1).all()
    yellow, brown = torch.tensor(PALETTE["yellow"]), torch.tensor(PALETTE["brown"])
    direction = torch.nn.functional.normalize(centre.mean(0), dim=0)
    assert direction @ torch.nn.functional.normalize(yellow, dim=0) > 0.99
    # from the side: upper rows are the accent, lower rows the body
    rgb, alpha = render_spec(spec, cameras(0, 0.0), torch.ones(1, 3), 64)
    rows = (alpha[0] > 0.99).any(1).nonzero()[:, 0]
    top_row, bottom_row = rgb[0, rows[0] + 1, 32], rgb[0, rows[-1] - 1, 32]
    unit = lambda v: torch.nn.functional.normalize(v, dim=0)  # noqa: E731
    assert unit(top_row) @ unit(yellow) > unit(top_row) @ unit(brown)
    assert unit(bottom_row) @ unit(brown) > unit(bottom_row) @ unit(yellow)


def test_two_tone_band_is_in_the_middle_and_the_same_at_every_yaw():
    spec = ObjectSpec("cylinder", "slate", "red", "band")
    red, slate = torch.tensor(PALETTE["red"]), torch.tensor(PALETTE["slate"])
    unit = lambda v: torch.nn.functional.normalize(v, dim=0)  # noqa: E731
    for yaw in (0.0, 70.0):
        rgb, alpha = render_spec(spec, cameras(0, 0.0), torch.ones(1, 3), 64, yaw_deg=yaw)
        rows = (alpha[0] > 0.99).any(1).nonzero()[:, 0]
        middle = rgb[0, (rows[0] + rows[-1]) // 2, 32]
        top = rgb[0, rows[0] + 1, 32]
        assert unit(middle) @ unit(red) > unit(middle) @ unit(slate), yaw
        assert unit(top) @ unit(slate) > unit(top) @ unit(red), yaw
    # the silhouette is the solid object's
    _, solid_alpha = render_scenes(object_scenes("cylinder", "red", 1), cameras(0, 0.0),
                                   torch.ones(1, 3), 64)
    assert torch.equal(alpha, solid_alpha)


def test_sample_scenes_per_split():
    g = torch.Generator().manual_seed(4)
    solid = sample_scenes(64, g, "solid")
    assert (solid.accent == -1).all() and (solid.colour < len(SOLID_COLOURS)).all()
    two = sample_scenes(64, g, "two-tone")
    names = {COLOUR_NAMES[c] for c in two.colour.tolist()}
    assert names <= set(MUTED_COLOURS) and (two.accent >= 0).all() and (two.pattern >= 0).all()
    both = sample_scenes(256, g, "both")
    share = (both.accent >= 0).float().mean().item()
    assert 0.35 < share < 0.65
    assert len(Scenes.cat([solid, two])) == 128 and len(two[:5]) == 5
    with pytest.raises(ConfigError, match="plaid"):
        sample_scenes(2, g, "plaid")
    with pytest.raises(ConfigError, match="give both"):
        object_scenes("cube", "brown", 1, accent="red")


def test_captions_of_two_tone_scenes():
    g = torch.Generator().manual_seed(6)
    views = render_views(8, g, "cpu", DataConfig(resolution=16, split="two-tone"))
    for caption, obj in zip(views.view_captions, views.object_captions):
        spec = parse_prompt(obj)
        assert spec.split == "two-tone" and spec_prompt(spec) == obj
        assert caption.startswith(obj + ", ") and caption.endswith(" view")
    overhead = render_views(16, g, "cpu", DataConfig(resolution=16, overhead_share=1.0))
    assert all(c.endswith("overhead view") for c in overhead.view_captions)


def test_prompts_of_the_splits():
    assert len(split_prompts("solid")) == 48 and len(split_prompts("two-tone")) == 192
    assert split_prompts("solid")[:2] == ["a red sphere", "an orange sphere"]
    assert "an olive cone with a black band" in split_prompts("two-tone")
    # the solid evaluation set is the original 12-prompt set, in its order
    assert [(s.shape, s.colour) for s in EVAL_SPECS["solid"]] == [
        ("cone", "red"), ("cube", "blue"), ("sphere", "green"), ("cylinder", "yellow"),
        ("torus", "purple"), ("pyramid", "orange"), ("cube", "cyan"), ("sphere", "pink"),
        ("cone", "orange"), ("torus", "green"), ("pyramid", "blue"), ("cylinder", "purple")]
    for split in SPLITS:
        assert len(eval_prompts(split)) == 12 and set(eval_prompts(split)) <= set(split_prompts(split))
        assert all(spec.split == split for spec in split_specs(split))
    two = EVAL_SPECS["two-tone"]
    assert all(sum(s.shape == shape for s in two) == 2 for shape in SHAPES)
    assert all(sum(s.pattern == p for s in two) == 6 for p in PATTERNS)
    assert {s.accent for s in two} == set(ACCENT_COLOURS) and {s.colour for s in two} == set(MUTED_COLOURS)


def test_parse_prompt_reads_what_people_type():
    assert parse_prompt("A Red Cone!") == ObjectSpec("cone", "red")
    assert parse_prompt("an orange pyramid") == ObjectSpec("pyramid", "orange")
    assert parse_prompt("a orange pyramid.") == ObjectSpec("pyramid", "orange")
    assert parse_prompt("violet torus") == ObjectSpec("torus", "purple")
    assert parse_prompt("An Olive Torus with a black STRIPE, side view") == ObjectSpec(
        "torus", "olive", "black", "band")
    assert parse_prompt("a grey-blue cube with a red top") == ObjectSpec("cube", "slate", "red", "top")
    assert spec_prompt(ObjectSpec("pyramid", "orange")) == "an orange pyramid"
    assert spec_prompt(ObjectSpec("sphere", "olive", "red", "top")) == "an olive sphere with a red top"
    for split in SPLITS:  # every prompt reads back as itself
        for prompt, spec in zip(split_prompts(split), split_specs(split)):
            assert parse_prompt(prompt) == spec and spec_prompt(spec) == prompt


@pytest.mark.parametrize("text, named", [
    ("a DSLR photo of a corgi", "'corgi'"), ("a blurry cone", "'blurry'"),
    ("a cone red", "of the form"), ("a brown cone", "brown objects wear an accent"),
    ("a red cone with a blue top", "red objects wear no accent"), ("a black cube", "'black'"),
    ("a brown cube with a yellow hat", "'hat'"), ("   ", "empty")])
def test_parse_prompt_names_the_worlds_words_in_one_line(text, named):
    with pytest.raises(PromptError) as caught:
        parse_prompt(text)
    message = str(caught.value)
    assert named in message and "\n" not in message
    assert "sphere, cube, cylinder, cone, torus, pyramid" in message
    assert "red, orange, yellow, green, cyan, blue, purple, pink" in message
    assert "brown, olive, beige, slate" in message and "<top|band>" in message
    for word in ("gloomy", "low-resolution", "overhead", "unrealistic"):  # not the prior's other words
        assert word not in message


@pytest.mark.parametrize("text, named", [
    ("a brown cube with a yellow top", "the world's two-tone split"),
    ("an olive torus with a black stripe", "the world's two-tone split"),
    ("a brown cone", "'brown'"), ("a red cone with a blue top", "'top', 'with'"),
    ("a DSLR photo of a corgi", "'corgi'")])
def test_a_prior_of_the_solid_split_names_its_own_words_only(text, named):
    """Issue 27: the shipped prior knows the solid split; its errors suggest nothing else."""
    from nfsd_gs.shapeworld import splits_known_to
    from nfsd_gs.shapeworld.vocabulary import words_of_split

    splits = splits_known_to(words_of_split("solid") | {",", "view", "blurry"})
    assert splits == ("solid",)
    assert splits_known_to(words_of_split("solid") | words_of_split("two-tone")) == SPLITS
    assert parse_prompt("A Red Cone!", splits) == ObjectSpec("cone", "red")
    with pytest.raises(PromptError) as caught:
        parse_prompt(text, splits, knower="prior 'p'")
    message = str(caught.value)
    assert named in message and "prior 'p'" in message and "\n" not in message
    assert "red, orange, yellow, green, cyan, blue, purple, pink" in message
    for word in ("brown", "with a", "top", "band"):  # the two-tone split's words
        assert word not in message.split("; it knows ")[1]


def test_samples_command_refuses_a_zero_count_in_one_line(tmp_path, capsys):
    from nfsd_gs.shapeworld.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["samples", "--count", "0", "--out", str(tmp_path / "grid.png")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "error: argument --count: 0 must be at least 1")
    assert not any(tmp_path.iterdir())
