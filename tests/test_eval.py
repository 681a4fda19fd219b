"""Evaluation (python -m nfsd_gs.eval) on the CPU: metrics on images with known answers,
alignment to the ground truth, summaries with their spread, and a tiny end-to-end run.

The end-to-end judge is randomly initialised (no test may depend on the shipped weights),
so accuracies there are checked against the names the judge gave, not against a value;
the judge's accounting itself is checked with a fake judge whose verdicts are known.
"""

import json
import statistics
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nfsd_gs import score as sc
from nfsd_gs.cameras import orbit_cameras
from nfsd_gs.config import load_config
from nfsd_gs.errors import ConfigError, NfsdError
from nfsd_gs.eval import report, runner, variants
from nfsd_gs.eval.__main__ import main, parse_args, settings_from_args
from nfsd_gs.eval.prompts import ObjectSpec, parse_prompt, split_prompts
from nfsd_gs.guidance.nfsd import nfsd_direction
from nfsd_gs.score import ground_truth, metrics
from nfsd_gs.shapeworld.judge import Judge, JudgeNet
from nfsd_gs.shapeworld.world import COLOUR_NAMES, SHAPES

torch.set_num_threads(1)

#: A small alignment grid for CPU tests (yaws: multiple of the views; 1.3 lies on the scales).
TINY_ALIGN = ["--align-yaws", "8", "--align-scales", "0.65,1.3,3"]


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    """A randomly initialised judge saved like the shipped one."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("judge")
    info = {"shapes": list(SHAPES), "colours": list(COLOUR_NAMES), "width": 4}
    Judge(JudgeNet(width=4), SHAPES, COLOUR_NAMES, info).save(folder)
    return folder


def square(size=32, low=6, high=26, colour=(0.85, 0.1, 0.08)):
    """One image [1, S, S, 3] of a flat square on white, and its mask [1, S, S]."""
    image = torch.ones(1, size, size, 3)
    image[0, low:high, low:high] = torch.tensor(colour)
    mask = torch.zeros(1, size, size, dtype=torch.bool)
    mask[0, low:high, low:high] = True
    return image, mask


# ---------------------------------------------------------------------------- appearance


def test_saturation_of_pure_red_is_one_and_of_grey_is_zero():
    red = torch.zeros(1, 4, 4, 3)
    red[..., 0] = 1.0
    grey = torch.full((1, 4, 4, 3), 0.5)
    everywhere = torch.ones(1, 4, 4, dtype=torch.bool)
    assert metrics.mean_saturation(red, everywhere) == pytest.approx(1.0)
    assert metrics.mean_saturation(grey, everywhere) == pytest.approx(0.0)
    assert metrics.mean_saturation(torch.zeros(1, 4, 4, 3), everywhere) == 0.0  # black: no NaN


def test_saturation_only_counts_masked_pixels_and_is_nan_without_any():
    image = torch.full((1, 4, 4, 3), 0.5)
    image[0, :2, :, :] = torch.tensor([1.0, 0.0, 0.0])  # top half red
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :2] = True
    assert metrics.mean_saturation(image, mask) == pytest.approx(1.0)
    assert torch.isnan(torch.tensor(metrics.mean_saturation(image, torch.zeros_like(mask))))
    with pytest.raises(ConfigError, match="mask"):
        metrics.mean_saturation(image, mask[:, :2])


def test_blur_lowers_sharpness():
    generator = torch.Generator().manual_seed(0)
    sharp = (torch.rand(2, 32, 32, 3, generator=generator) > 0.5).float()
    kernel = torch.ones(3, 1, 5, 5) / 25
    blurred = F.conv2d(sharp.permute(0, 3, 1, 2), kernel, padding=2, groups=3).permute(0, 2, 3, 1)
    s_sharp, s_blur = metrics.laplacian_variance(sharp), metrics.laplacian_variance(blurred)
    assert s_sharp.shape == (2,)
    assert (s_blur < s_sharp).all()
    assert metrics.laplacian_variance(torch.full((1, 8, 8, 3), 0.3)).item() == pytest.approx(0.0)


def test_coverage():
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0, :2] = True
    assert metrics.coverage(mask).tolist() == [0.5, 0.0]


# ---------------------------------------------------------------------------- CIELAB


def test_lab_of_known_colours():
    """Reference values of sRGB primaries, white and mid grey (D65, CIE 1976)."""
    rgb = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [0, 0, 0], [0.5, 0.5, 0.5]])
    expected = torch.tensor([[53.24, 80.09, 67.20], [87.73, -86.18, 83.18],
                             [32.30, 79.19, -107.86], [100, 0, 0], [0, 0, 0], [53.39, 0, 0]])
    assert metrics.srgb_to_lab(rgb) == pytest.approx(expected, abs=0.02)
    assert metrics.srgb_to_lab(rgb.view(2, 3, 1, 3)).shape == (2, 3, 1, 3)
    assert metrics.delta_e76(torch.tensor([50.0, 3, 4]), torch.tensor([50.0, 0, 0])) == 5


def test_colour_error_counts_only_the_shared_object_pixels():
    ours, mask = square()
    truth = ours.clone()
    assert metrics.colour_error(ours, truth, mask) == pytest.approx(0.0)
    truth[~mask] = 0.0  # differences outside the mask do not count
    assert metrics.colour_error(ours, truth, mask) == pytest.approx(0.0)
    grey = torch.full_like(ours, 0.5)
    white = torch.ones_like(ours)
    assert metrics.colour_error(grey, white, mask) == pytest.approx(100 - 53.39, abs=0.02)
    assert torch.isnan(torch.tensor(metrics.colour_error(grey, white, torch.zeros_like(mask))))


# ---------------------------------------------------------------------------- speckle


def test_clean_object_has_no_speckle_even_at_its_edges_or_shading():
    image, mask = square()
    assert metrics.speckle_fraction(image, mask) == 0.0  # the white background takes no part
    shaded = image.clone()  # a smooth ramp across the object (Lambert-like shading)
    ramp = torch.linspace(0.5, 1.0, 20)[None, :, None]
    shaded[0, 6:26, 6:26] = torch.tensor([0.85, 0.1, 0.08]) * ramp
    assert metrics.speckle_fraction(shaded, mask) == 0.0


def test_salt_and_pepper_speckle_is_the_share_of_flipped_pixels():
    image, mask = square()
    flipped = [(y, x) for y in range(8, 25, 4) for x in range(8, 25, 4)]  # 25 isolated pixels
    for i, (y, x) in enumerate(flipped):
        image[0, y, x] = torch.tensor([0.0, 0.0, 0.0] if i % 2 else [1.0, 1.0, 1.0])
    interior = (26 - 6 - 2) ** 2  # the 20x20 square less its one-pixel rim
    assert metrics.speckle_fraction(image, mask) == pytest.approx(len(flipped) / interior)
    marked = metrics.speckle_map(image, mask)
    assert sorted(map(tuple, marked[0].nonzero().tolist())) == flipped
    with pytest.raises(ConfigError, match="window"):
        metrics.speckle_fraction(image, mask, window=4)


# ---------------------------------------------------------------------------- silhouettes


def test_silhouette_iou_pools_views():
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    b = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[0, 0, :4] = True  # 4 pixels
    b[0, 0, :2] = True  # 2 of them
    a[1, 3, 3] = b[1, 3, 3] = True  # 1 shared in view 1
    assert float(metrics.silhouette_iou(a, b)) == pytest.approx(3 / 5)
    empty = torch.zeros(2, 4, 4, dtype=torch.bool)
    assert float(metrics.silhouette_iou(empty, empty)) == 1.0


@pytest.mark.parametrize("spec", [ObjectSpec("pyramid", "blue"), ObjectSpec("cube", "blue"),
                                  ObjectSpec("cube", "brown", "yellow", "top")])
def test_alignment_finds_the_turned_and_scaled_object(spec):
    """A ground truth turned by 30 degrees and scaled by 1.3 is found again (IoU ~ 1), its
    colours match; the unit object seen as is has a lower IoU."""
    config = load_config("tiny_test")
    cameras = ground_truth.eval_cameras(config, 4)
    background = torch.ones(4, 3)
    rgb, mask = ground_truth.render_ground_truth(spec, cameras, background, 32, scale=1.3,
                                                 yaw_deg=30.0)
    bank = ground_truth.SilhouetteBank(spec, config.camera, 4, 32, yaws=24,
                                       scales=(0.65, 1.3, 3))
    found = bank.align(mask)
    assert found.scale == pytest.approx(1.3, rel=1e-4)
    assert found.yaw_deg % 90 == pytest.approx(30.0)  # both shapes repeat every 90 degrees
    assert found.iou > 0.97
    scores, aligned = ground_truth.compare_to_truth(spec, rgb, mask, cameras, background, bank)
    assert scores["iou"] > 0.97 and scores["colour_de"] < 1.0 and aligned.shape == rgb.shape
    _, unit = ground_truth.render_ground_truth(spec, cameras, background, 32)
    assert float(metrics.silhouette_iou(mask, unit)) < 0.8
    with pytest.raises(ConfigError, match="multiple"):
        ground_truth.SilhouetteBank(spec, config.camera, 4, 32, yaws=6)


@pytest.mark.parametrize("prompt, distinct", [("a red cone", 1), ("a blue cube", 6)])
def test_the_bank_renders_only_distinct_yaws_and_equals_every_yaw_rendered(prompt, distinct):
    """A round shape needs one azimuth per scale, a cube a quarter turn of them; the bank
    they make is the one rendered at every azimuth, pixel for pixel."""
    config = load_config("tiny_test")
    spec = parse_prompt(prompt)
    assert ground_truth.distinct_yaws(spec.shape, 24) == distinct
    bank = ground_truth.SilhouetteBank(spec, config.camera, 4, 32, yaws=24, scales=(0.65, 1.3, 3))
    cam = config.camera
    for s, scale in enumerate(bank.scales.tolist()):
        full = lambda value: torch.full((24,), float(value))  # noqa: E731
        cameras = orbit_cameras(torch.arange(24.0) * 15, full(cam.eval_elevation),
                                full(cam.eval_radius / scale), full(cam.eval_fovy))
        _, every = ground_truth.render_ground_truth(spec, cameras, torch.ones(24, 3), 32)
        assert torch.equal(bank.masks[s], every), scale
    assert ground_truth.distinct_yaws("cube", 7) == 7  # 90 degrees is no whole number of steps


# ---------------------------------------------------------------------------- judge


class FakeJudge:
    """Names the views as told (``verdict`` as the world's judge: {head: names})."""

    def __init__(self, **verdicts):
        self.verdicts = verdicts

    def verdict(self, images):
        return self.verdicts


def test_judge_scores_count_each_head_both_and_all():
    judge = FakeJudge(shape=["cone", "cone", "cube", "cone"], colour=["red", "blue", "red", "red"],
                      accent=["none", "none", "none", "red top"])
    expected = {"shape": "cone", "colour": "red", "accent": "none"}
    scores = metrics.judge_scores(judge, torch.zeros(4, 8, 8, 3), expected)
    assert scores["shape_acc"] == 0.75 and scores["colour_acc"] == 0.75
    assert scores["accent_acc"] == 0.75
    assert scores["both_acc"] == 0.5  # views 0 and 3
    assert scores["all_acc"] == 0.25  # view 0 only: view 3 has an accent it should not have
    assert scores["judged"] == ["red cone", "blue cone", "red cube", "red cone + red top"]
    two_heads = FakeJudge(shape=["cone"], colour=["red"])  # a judge without the accent head
    scores = metrics.judge_scores(two_heads, torch.zeros(1, 8, 8, 3), expected)
    assert "accent_acc" not in scores and scores["all_acc"] == scores["both_acc"] == 1.0
    with pytest.raises(ConfigError, match="shape or colour"):
        metrics.judge_scores(FakeJudge(shape=["cone"]), torch.zeros(1, 8, 8, 3), expected)


def test_ground_truth_renders_and_scores_with_the_world_colours(judge_dir):
    config = load_config("tiny_test")
    cameras = sc.eval_cameras(config, 8)
    assert cameras.azimuth_deg.tolist() == [0, 45, 90, 135, -180, -135, -90, -45]
    rgb, mask = sc.render_ground_truth(ObjectSpec("cone", "red"), cameras, torch.ones(8, 3), 32)
    assert rgb.shape == (8, 32, 32, 3) and mask.shape == (8, 32, 32) and mask.dtype == torch.bool
    assert 0.02 < sc.coverage(mask).mean() < 0.9
    assert (rgb[:, 0, 0] == 1).all()  # the white background in the corners
    scores = sc.score_views(sc.load_judge(str(judge_dir), torch.device("cpu")), rgb, mask,
                            sc.expected_verdicts(ObjectSpec("cone", "red")))
    assert scores["shape_acc"] == sum(j.endswith(" cone") for j in scores["judged"]) / 8
    assert scores["saturation"] > 0.5  # a red object is saturated
    assert scores["sharpness"] > 0
    assert scores["speckle"] < 0.1  # a clean ray-cast cone


# ---------------------------------------------------------------------------- prompts, variants


def test_prompt_set_covers_the_world():
    prompts = split_prompts("solid")
    assert len(prompts) == 12 and len(set(prompts)) == len(prompts)
    parsed = [parse_prompt(p) for p in prompts]
    assert {s.shape for s in parsed} == set(SHAPES)
    assert len({s.colour for s in parsed}) == 8
    assert parse_prompt("a red cone") == ObjectSpec("cone", "red")
    assert sc.expected_verdicts(parse_prompt("a red cone")) == \
        {"shape": "cone", "colour": "red", "accent": "none"}
    with pytest.raises(NfsdError, match="a shiny teapot"):
        parse_prompt("a shiny teapot")
    with pytest.raises(ConfigError, match="marble"):
        split_prompts("marble")
    two_tone = split_prompts("two-tone")
    assert len(two_tone) == 12 and split_prompts("all") == prompts + two_tone
    spec = parse_prompt(two_tone[0])
    assert spec.accent is not None and sc.expected_verdicts(spec)["accent"] == spec.accent_label


def test_variants_and_placeholders():
    v = variants.parse_variant("box-init=init.kind={primitive},init.color={colour_rgb} steps=5")
    assert v == variants.Variant("box-init", ("init.kind={primitive}", "init.color={colour_rgb}",
                                              "steps=5"))
    cube = ObjectSpec("cube", "red")
    assert variants.fill_placeholders("init.kind={primitive}", cube) == "init.kind=box"
    assert variants.fill_placeholders("init.color={colour_rgb}", cube) == \
        "init.color=[0.85,0.1,0.08]"
    assert variants.parse_variant("n=config=nfsd_nerf,steps=3").config == "nfsd_nerf"
    assert variants.split_overrides("a=[1, 2],b='x, y' c=3") == ["a=[1, 2]", "b='x, y'", "c=3"]
    with pytest.raises(ConfigError, match="nosuch"):
        variants.select_variants(["nosuch"], [])
    with pytest.raises(ConfigError, match="bad"):
        variants.parse_variant("bad")
    with pytest.raises(ConfigError, match="{nope}"):
        variants.fill_placeholders("init.kind={nope}", cube)


def test_placeholder_variant_resolves_to_a_valid_config(tmp_path):
    settings = runner.Settings(config="tiny_test")
    variant = variants.Variant("shape-colour-init", variants.VARIANTS["shape-colour-init"])
    config = runner.run_config(settings, variant, "a blue cube", 3, tmp_path)
    assert config.init.kind == "box" and config.init.color == pytest.approx((0.1, 0.22, 0.9))
    assert config.prompt == "a blue cube" and not config.output.turntable and config.seed == 3


def test_nfsd_without_negative_term_uses_the_unconditional_domain_term_at_every_t(tmp_path):
    config = runner.run_config(runner.Settings(config="tiny_test"),
                               variants.Variant("x", variants.VARIANTS["nfsd-no-neg@7.5"]),
                               "a red cone", 0, tmp_path)
    g = config.guidance
    assert g.method == "nfsd" and g.cfg_scale == 7.5
    cond, uncond, negative = torch.randn(3, 2, 4, 8, 8).unbind(0)
    t = torch.tensor([999, 500])  # both past the paper's 200, where NFSD uses the negative
    got = nfsd_direction(cond, uncond, negative, t, g.cfg_scale, g.negative_threshold_t)
    assert torch.allclose(got, uncond + 7.5 * (cond - uncond))
    paper = nfsd_direction(cond, uncond, negative, t, 7.5, 200)
    assert torch.allclose(paper, uncond - negative + 7.5 * (cond - uncond))


def test_comparison_defaults_and_seed_flags():
    settings, chosen, prompts = settings_from_args(parse_args(["--comparison"]))
    assert [v.name for v in chosen] == list(variants.COMPARISON_VARIANTS)
    assert [v.name for v in chosen] == ["nfsd@7.5", "sds@7.5", "sds@100", "nfsd-no-neg@7.5",
                                        "nerf"]
    assert settings.seeds == (0, 1, 2) and prompts == split_prompts("solid")
    settings, chosen, prompts = settings_from_args(parse_args(
        ["--comparison", "--seeds", "4,5", "--limit", "2", "--variants", "sds@100"]))
    assert settings.seeds == (4, 5) and len(prompts) == 2
    assert [v.name for v in chosen] == ["sds@100"]
    settings, chosen, _ = settings_from_args(parse_args([]))
    assert settings.seeds == (0,) and [v.name for v in chosen] == list(variants.DEFAULT_VARIANTS)
    for bad, match in ((["--seeds", "1,x"], "--seeds"), (["--seeds", "1,1"], "distinct"),
                       (["--seed", "1", "--seeds", "2"], "not both"),
                       (["--align-yaws", "12"], "multiple"), (["--split", "marble"], "marble"),
                       (["--align-scales", "1,2"], "LOW,HIGH,COUNT"),
                       (["--align-scales", "2,1,5"], "low <= high"),
                       (["--align-scales", "0.5,2,0"], "count >= 1")):
        with pytest.raises(ConfigError, match=match):
            settings_from_args(parse_args(bad))


# ---------------------------------------------------------------------------- summaries, resume


def _row(variant, prompt, seed, iou, error=None):
    ours = {"shape_acc": 1.0, "colour_acc": 0.5, "both_acc": 0.5, "iou": iou, "judged": ["x"],
            "saturation": 0.5, "sharpness": 0.01, "coverage": 0.1, "speckle": 0.0,
            "colour_de": float("nan")}
    return {"variant": variant, "prompt": prompt, "seed": seed, "ours": ours,
            "truth": dict(ours), "train_s": 2.0, "steps_per_s": 100.0, "error": error}


def test_summary_spread_over_runs_and_over_seed_means():
    rows = [_row("a", "p1", 0, 0.2), _row("a", "p2", 0, 0.4), _row("a", "p1", 1, 0.6),
            _row("a", "p2", 1, 0.8), _row("a", "p3", 1, 0.0, error="Boom: x"),
            _row("b", "p1", 0, 0.5)]
    a, b = report.summarize(rows, ["a", "b"])
    assert (a["runs"], a["errors"], a["prompts"], a["seeds"]) == (4, 1, 2, [0, 1])
    assert a["iou_ours"] == pytest.approx(0.5)
    assert a["iou_ours_std"] == pytest.approx(statistics.stdev([0.2, 0.4, 0.6, 0.8]))
    assert a["iou_ours_seed_std"] == pytest.approx(statistics.stdev([0.3, 0.7]))
    assert a["colour_de_ours"] is None  # NaN only: no mean
    assert a["all_acc_ours"] == 0.5  # rows from before the accent head: both_acc
    assert b["iou_ours"] == 0.5 and b["iou_ours_std"] is None and b["iou_ours_seed_std"] is None
    table = report.summary_table([a, b])
    assert "| a | 4 (2 x 2) | 1 |" in table and "0.5 ±0.26 (±0.28)" in table
    assert "| b | 1 (1 x 1) | 0 |" in table


def test_merge_keeps_earlier_runs_of_other_seeds_and_replaces_the_same_run():
    earlier = [_row("a", "p1", 0, 0.1), _row("a", "p1", 1, 0.2), _row("b", "p1", 0, 0.3)]
    now = [_row("a", "p1", 1, 0.9)]
    merged = runner.merge_rows(earlier, now, ["a", "b"])
    assert [(r["variant"], r["seed"], r["ours"]["iou"]) for r in merged] == \
        [("a", 0, 0.1), ("a", 1, 0.9), ("b", 0, 0.3)]


# ---------------------------------------------------------------------------- end to end


def _check_judged(scores, shape):
    assert len(scores["judged"]) == 8
    assert scores["shape_acc"] == sum(j.split()[1] == shape for j in scores["judged"]) / 8


def test_end_to_end_two_variants_two_seeds_resume(tmp_path, judge_dir, capsys):
    out = tmp_path / "eval"
    args = ["--config", "tiny_test", "--limit", "1", "--variants", "nfsd@7.5,sds@100",
            "--judge", str(judge_dir), "--out", str(out), "--steps", "2", "--resolution", "32",
            "--seeds", "0,1", *TINY_ALIGN, "camera.resolution=32"]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "| variant |" in table and "| nfsd@7.5 | 2 (1 x 2) | 0 |" in table

    result = json.loads((out / "results.json").read_text())
    assert result["meta"]["status"] == "complete" and result["meta"]["seeds"] == [0, 1]
    assert [(r["variant"], r["seed"]) for r in result["rows"]] == \
        [("nfsd@7.5", 0), ("nfsd@7.5", 1), ("sds@100", 0), ("sds@100", 1)]
    assert {r["prompt"] for r in result["rows"]} == {"a red cone"}
    assert [s["variant"] for s in result["summary"]] == ["nfsd@7.5", "sds@100"]
    for row in result["rows"]:
        assert row["error"] is None, row["error"]
        assert row["steps"] == 2 and row["train_s"] > 0 and row["steps_per_s"] > 0
        assert row["num_primitives"] > 0
        grid = (0.65, (0.65 * 1.3) ** 0.5, 1.3)  # geometric: 0.65, 0.919, 1.3
        assert any(row["alignment"]["scale"] == pytest.approx(g, rel=1e-4) for g in grid)
        assert row["alignment"]["yaw_deg"] in (0, 45, 90, 135, 180, 225, 270, 315)
        _check_judged(row["ours"], "cone")
        _check_judged(row["truth"], "cone")
        assert 0 < row["ours"]["iou"] < 1 and row["ours"]["colour_de"] > 0
        assert Path(row["strip"]).is_file() and Path(row["run_dir"], "model.ply").is_file()
    # Another seed is another run: different Gaussians.
    assert result["rows"][0]["signature"] != result["rows"][1]["signature"]
    from PIL import Image

    strip = Image.open(result["rows"][0]["strip"])
    assert strip.size == (8 * 32, 2 * 32)  # ours above the ground truth
    markdown = (out / "results.md").read_text()
    assert "## Per variant" in markdown and "## Per run" in markdown
    assert markdown.count("| nfsd@7.5 |") == 1 + 2

    # Running again continues: finished runs are kept, not retrained.
    assert main(args) == 0
    assert capsys.readouterr().err.count("kept from an earlier run") == 4
    again = json.loads((out / "results.json").read_text())
    assert [r["run_dir"] for r in again["rows"]] == [r["run_dir"] for r in result["rows"]]

    # Another seed into the same folder: the earlier runs stay, the new one is added.
    assert main([*args[:4], "--variants", "sds@100", *args[6:12], "--seeds", "2",
                 *TINY_ALIGN, "camera.resolution=32"]) == 0
    merged = json.loads((out / "results.json").read_text())
    assert [(r["variant"], r["seed"]) for r in merged["rows"]] == \
        [("nfsd@7.5", 0), ("nfsd@7.5", 1), ("sds@100", 0), ("sds@100", 1), ("sds@100", 2)]
    assert [r["run_dir"] for r in merged["rows"][:4]] == [r["run_dir"] for r in result["rows"]]
    assert merged["summary"][1]["seeds"] == [0, 1, 2]


def test_a_failing_prompt_is_an_error_row(tmp_path, judge_dir):
    out = tmp_path / "eval"
    code = main(["--config", "tiny_test", "--prompts", "a red cone", "--warmup",
                 "--judge", str(judge_dir),
                 "--out", str(out), "--steps", "1", "--resolution", "16", *TINY_ALIGN,
                 "--variants", "none", "--variant", "broken=prior.model=/no/such/prior"])
    assert code == 0
    (row,) = json.loads((out / "results.json").read_text())["rows"]
    assert row["variant"] == "broken" and "/no/such/prior" in row["error"] and row["seed"] == 0
    assert "| broken | a red cone | 0 | – |" in (out / "results.md").read_text()


def test_bad_command_line_is_one_error_line(tmp_path, judge_dir, capsys):
    assert main(["--config", "tiny_test", "--prompts", "a wooden chair",
                 "--judge", str(judge_dir), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "a wooden chair" in err and len(err.splitlines()) == 1


def test_ctrl_c_writes_what_is_done(tmp_path, judge_dir, monkeypatch):
    out, real, calls = tmp_path / "eval", runner.judged_row, []

    def second_is_interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "judged_row", second_is_interrupted)
    code = main(["--config", "tiny_test", "--limit", "3", "--variants", "nfsd@7.5",
                 "--judge", str(judge_dir), "--out", str(out), "--steps", "1",
                 "--resolution", "16", "--no-warmup", "--worst", "2", *TINY_ALIGN])
    assert code == 130 and len(calls) == 2
    result = json.loads((out / "results.json").read_text())
    assert result["meta"]["status"] == "interrupted"
    assert [r["error"] is None for r in result["rows"]] == [True, False]
    assert "(interrupted)" in (out / "results.md").read_text()
    # --worst: the sheet of what finished; the interrupted run (an error row) first, no strip
    worst = (out / "worst.md").read_text().splitlines()
    first, second = result["rows"][1]["prompt"], result["rows"][0]["prompt"]
    assert worst[0] == "# The worst runs of each variant (interrupted)"
    assert worst[-2].startswith(f"1. {first}, seed 0: error: ") and worst[-2].endswith("(no strip)")
    assert worst[-1].startswith(f"2. {second}, seed 0: judge ")
    assert worst[-1].endswith("(`strips/nfsd_7_5/" + second.replace(" ", "_") + "_seed0.png`)")
    assert (out / "worst.png").is_file()


@pytest.mark.slow
def test_runs_trained_together_score_as_trained_alone(tmp_path, judge_dir, capsys):
    """--assets-per-process 3 (one U-Net call per step for three runs) against 1: the same
    rows in the same order, the same verdicts, IoU and colour error equal up to float noise;
    and a run made at one M is kept at another (M is not part of what a run is)."""
    args = ["--config", "tiny_test", "--limit", "1", "--variants", "nfsd@7.5,sds@100",
            "--judge", str(judge_dir), "--steps", "3", "--resolution", "32", "--seeds", "0,1",
            "--no-warmup", *TINY_ALIGN, "camera.resolution=32"]
    results = {}
    for m in (1, 3):
        out = tmp_path / f"m{m}"
        assert main([*args, "--out", str(out), "--assets-per-process", str(m)]) == 0
        results[m] = json.loads((out / "results.json").read_text())
        assert results[m]["meta"]["assets_per_process"] == m
    capsys.readouterr()
    alone, together = results[1]["rows"], results[3]["rows"]
    assert [runner.row_key(r) for r in together] == [runner.row_key(r) for r in alone]
    for a, b in zip(alone, together):
        assert b["error"] is None and b["assets_at_once"] == 3 and a["assets_at_once"] == 1
        assert b["signature"] == a["signature"] and b["num_primitives"] == a["num_primitives"]
        assert b["ours"]["judged"] == a["ours"]["judged"]
        assert b["ours"]["iou"] == pytest.approx(a["ours"]["iou"], abs=1e-3)
        assert b["ours"]["colour_de"] == pytest.approx(a["ours"]["colour_de"], abs=0.05)
    assert main([*args, "--out", str(tmp_path / "m1"), "--assets-per-process", "2"]) == 0
    assert capsys.readouterr().err.count("kept from an earlier run") == 4


def test_steps_curve_finds_the_fewest_steps_within_the_seed_spread():
    from nfsd_gs.eval.report import steps_curve, steps_curve_table

    def summary(name, mean, seed_std):
        return {"variant": name, "runs": 36, "all_acc_ours": mean,
                "all_acc_ours_seed_std": seed_std, "train_s": 1.0}

    summaries = [summary("steps400", 0.90, 0.03), summary("steps100", 0.70, 0.05),
                 summary("steps200", 0.88, 0.01), summary("nfsd@7.5", 0.95, 0.0),
                 summary("steps300", 0.91, None)]
    rows, fewest = steps_curve(summaries)
    assert [r["steps"] for r in rows] == [100, 200, 300, 400]  # other variants left out
    assert fewest == 200  # 0.88 >= 0.90 - 0.03; 0.70 is not
    assert "**200**" in steps_curve_table(rows, fewest)
    rows, fewest = steps_curve([summary("steps400", 0.9, None), summary("steps200", 0.89, None)])
    assert fewest == 400 and "No shorter run" in steps_curve_table(rows, fewest)
    assert steps_curve([summary("steps400", None, None)])[1] is None
