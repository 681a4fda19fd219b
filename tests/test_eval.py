"""Evaluation (python -m nfsd_gs.eval) on the CPU: metrics, ground truth, and a tiny end-to-end run.

The judge here is randomly initialised (the shipped one may not exist yet), so no test
asserts on accuracy values, only on the structure of what is computed and written.
"""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nfsd_gs import eval as ev
from nfsd_gs.config import load_config
from nfsd_gs.errors import ConfigError
from nfsd_gs.shapeworld.judge import Judge, JudgeNet
from nfsd_gs.shapeworld.world import COLOUR_NAMES, SHAPES

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    """A randomly initialised judge saved like the shipped one."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("judge")
    info = {"shapes": list(SHAPES), "colours": list(COLOUR_NAMES), "width": 4}
    Judge(JudgeNet(width=4), SHAPES, COLOUR_NAMES, info).save(folder)
    return folder


# ---------------------------------------------------------------------------- metrics


def test_saturation_of_pure_red_is_one_and_of_grey_is_zero():
    red = torch.zeros(1, 4, 4, 3)
    red[..., 0] = 1.0
    grey = torch.full((1, 4, 4, 3), 0.5)
    everywhere = torch.ones(1, 4, 4, dtype=torch.bool)
    assert ev.mean_saturation(red, everywhere) == pytest.approx(1.0)
    assert ev.mean_saturation(grey, everywhere) == pytest.approx(0.0)
    assert ev.mean_saturation(torch.zeros(1, 4, 4, 3), everywhere) == 0.0  # black: no NaN


def test_saturation_only_counts_masked_pixels_and_is_nan_without_any():
    image = torch.full((1, 4, 4, 3), 0.5)
    image[0, :2, :, :] = torch.tensor([1.0, 0.0, 0.0])  # top half red
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :2] = True
    assert ev.mean_saturation(image, mask) == pytest.approx(1.0)
    assert torch.isnan(torch.tensor(ev.mean_saturation(image, torch.zeros_like(mask))))
    with pytest.raises(ConfigError, match="mask"):
        ev.mean_saturation(image, mask[:, :2])


def test_blur_lowers_sharpness():
    generator = torch.Generator().manual_seed(0)
    sharp = (torch.rand(2, 32, 32, 3, generator=generator) > 0.5).float()
    kernel = torch.ones(3, 1, 5, 5) / 25
    blurred = F.conv2d(sharp.permute(0, 3, 1, 2), kernel, padding=2, groups=3).permute(0, 2, 3, 1)
    s_sharp, s_blur = ev.laplacian_variance(sharp), ev.laplacian_variance(blurred)
    assert s_sharp.shape == (2,)
    assert (s_blur < s_sharp).all()
    assert ev.laplacian_variance(torch.full((1, 8, 8, 3), 0.3)).item() == pytest.approx(0.0)


def test_coverage():
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0, :2] = True
    assert ev.coverage(mask).tolist() == [0.5, 0.0]


# ---------------------------------------------------------------------------- prompts, variants


def test_prompt_set_covers_the_world():
    prompts = ev.default_prompts()
    assert len(prompts) >= 12 and len(set(prompts)) == len(prompts)
    parsed = [ev.parse_prompt(p) for p in prompts]
    assert {s for s, _ in parsed} == set(SHAPES)
    assert len({c for _, c in parsed}) >= 8
    assert ev.parse_prompt("a red cone") == ("cone", "red")
    with pytest.raises(ConfigError, match="a shiny teapot"):
        ev.parse_prompt("a shiny teapot")


def test_variants_and_placeholders():
    v = ev.parse_variant("box-init=init.kind={primitive},init.color={colour_rgb} steps=5")
    assert v == ev.Variant("box-init", ("init.kind={primitive}", "init.color={colour_rgb}",
                                        "steps=5"))
    assert ev.fill_placeholders("init.kind={primitive}", "cube", "red") == "init.kind=box"
    assert ev.fill_placeholders("init.color={colour_rgb}", "cube", "red") == \
        "init.color=[0.85,0.1,0.08]"
    assert ev.parse_variant("n=config=nfsd_nerf,steps=3").config == "nfsd_nerf"
    assert ev.split_overrides("a=[1, 2],b='x, y' c=3") == ["a=[1, 2]", "b='x, y'", "c=3"]
    with pytest.raises(ConfigError, match="nosuch"):
        ev.select_variants(["nosuch"], [])
    with pytest.raises(ConfigError, match="bad"):
        ev.parse_variant("bad")
    with pytest.raises(ConfigError, match="{nope}"):
        ev.fill_placeholders("init.kind={nope}", "cube", "red")


def test_placeholder_variant_resolves_to_a_valid_config(tmp_path):
    settings = ev.Settings(config="tiny_test")
    variant = ev.Variant("shape-colour-init", ev.VARIANTS["shape-colour-init"])
    config = ev.run_config(settings, variant, "a blue cube", tmp_path)
    assert config.init.kind == "box" and config.init.color == pytest.approx((0.1, 0.22, 0.9))
    assert config.prompt == "a blue cube" and not config.output.turntable


# ---------------------------------------------------------------------------- ground truth


def test_ground_truth_scoring(judge_dir):
    judge = ev.load_judge(str(judge_dir), torch.device("cpu"))
    config = load_config("tiny_test")
    cameras = ev.eval_cameras(config, 8)
    assert cameras.azimuth_deg.tolist() == [0, 45, 90, 135, -180, -135, -90, -45]
    background = torch.ones(8, 3)
    rgb, mask = ev.render_ground_truth("cone", "red", cameras, background, 32)
    assert rgb.shape == (8, 32, 32, 3) and mask.shape == (8, 32, 32) and mask.dtype == torch.bool
    assert 0.02 < ev.coverage(mask).mean() < 0.9
    assert (rgb[:, 0, 0] == 1).all()  # the white background in the corners
    scores = ev.score_views(judge, rgb, mask, "cone", "red")
    assert set(scores) == {"shape_acc", "colour_acc", "both_acc", "judged", "saturation",
                           "sharpness", "coverage"}
    assert len(scores["judged"]) == 8 and 0 <= scores["shape_acc"] <= 1
    assert scores["saturation"] > 0.5  # a red object is saturated
    assert scores["sharpness"] > 0


# ---------------------------------------------------------------------------- end to end


def test_end_to_end_writes_tables_json_and_strips(tmp_path, judge_dir, capsys):
    out = tmp_path / "eval"
    args = ["--config", "tiny_test", "--limit", "2", "--variants", "nfsd@7.5,sds@100",
            "--judge", str(judge_dir), "--out", str(out), "--steps", "2", "--resolution", "32",
            "camera.resolution=32"]
    assert ev.main(args) == 0
    table = capsys.readouterr().out
    assert "| variant |" in table and "nfsd@7.5" in table and "sds@100" in table

    result = json.loads((out / "results.json").read_text())
    assert result["meta"]["status"] == "complete"
    assert [r["prompt"] for r in result["rows"]] == ev.default_prompts()[:2] * 2
    assert [s["variant"] for s in result["summary"]] == ["nfsd@7.5", "sds@100"]
    for row in result["rows"]:
        assert row["error"] is None, row["error"]
        assert row["steps"] == 2 and row["train_s"] > 0 and row["steps_per_s"] > 0
        for side in ("ours", "truth"):
            assert len(row[side]["judged"]) == 8
            assert 0 <= row[side]["shape_acc"] <= 1 and 0 <= row[side]["colour_acc"] <= 1
        assert Path(row["strip"]).is_file() and Path(row["run_dir"], "model.ply").is_file()
    from PIL import Image

    strip = Image.open(result["rows"][0]["strip"])
    assert strip.size == (8 * 32, 2 * 32)  # ours above the ground truth
    markdown = (out / "results.md").read_text()
    assert "## Per variant" in markdown and "## Per prompt" in markdown
    assert markdown.count("| nfsd@7.5 |") == 1 + 2

    # Running again continues: finished runs are kept, not retrained.
    assert ev.main(args) == 0
    assert "kept from an earlier run" in capsys.readouterr().err
    again = json.loads((out / "results.json").read_text())
    assert [r["run_dir"] for r in again["rows"]] == [r["run_dir"] for r in result["rows"]]

    # Another variant into the same folder: the earlier variants' rows stay in the tables.
    assert ev.main([*args[:4], "--variants", "sds@7.5", "--limit", "1", *args[6:]]) == 0
    merged = json.loads((out / "results.json").read_text())
    assert [s["variant"] for s in merged["summary"]] == ["nfsd@7.5", "sds@100", "sds@7.5"]
    assert [r["variant"] for r in merged["rows"]] == ["nfsd@7.5"] * 2 + ["sds@100"] * 2 + ["sds@7.5"]
    assert [v["name"] for v in merged["meta"]["variants"]] == ["nfsd@7.5", "sds@100", "sds@7.5"]


def test_a_failing_prompt_is_an_error_row(tmp_path, judge_dir):
    out = tmp_path / "eval"
    code = ev.main(["--config", "tiny_test", "--prompts", "a red cone", "--warmup",
                    "--judge", str(judge_dir),
                    "--out", str(out), "--steps", "1", "--resolution", "16",
                    "--variants", "none", "--variant", "broken=prior.model=/no/such/prior"])
    assert code == 0
    (row,) = json.loads((out / "results.json").read_text())["rows"]
    assert row["variant"] == "broken" and "/no/such/prior" in row["error"]
    assert "| broken | a red cone | – |" in (out / "results.md").read_text()


def test_bad_command_line_is_one_error_line(tmp_path, judge_dir, capsys):
    assert ev.main(["--config", "tiny_test", "--prompts", "a wooden chair",
                    "--judge", str(judge_dir), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "a wooden chair" in err and len(err.splitlines()) == 1


def test_ctrl_c_writes_what_is_done(tmp_path, judge_dir, monkeypatch):
    out, real, calls = tmp_path / "eval", ev.evaluate_one, []

    def second_is_interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ev, "evaluate_one", second_is_interrupted)
    code = ev.main(["--config", "tiny_test", "--limit", "3", "--variants", "nfsd@7.5",
                    "--judge", str(judge_dir), "--out", str(out), "--steps", "1",
                    "--resolution", "16", "--no-warmup"])
    assert code == 130 and len(calls) == 2
    result = json.loads((out / "results.json").read_text())
    assert result["meta"]["status"] == "interrupted"
    assert [r["error"] is None for r in result["rows"]] == [True, False]
    assert "(interrupted)" in (out / "results.md").read_text()
