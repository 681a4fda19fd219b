"""One judge (issue 23): the end of a run, the catalogue, the evaluation and
``python -m nfsd_gs.score`` score a model with the same function, the same settings and the
same alignment grid, so their numbers agree for the same run.

The runs here are two-step runs of the bundled prior; the alignment grid is small (the
default's ground truth takes a minute or two on a CPU) and the same for every path."""

from __future__ import annotations

import json

import pytest
import torch

from nfsd_gs.batch.catalogue import Defaults, Line, line_config
from nfsd_gs.batch.worker import AssetTrainer
from nfsd_gs.config import config_signature
from nfsd_gs.eval import runner
from nfsd_gs.eval.variants import VARIANTS, Variant
from nfsd_gs.guidance.prior import PriorCache
from nfsd_gs.score import JudgeSettings, WorldJudge, load_judge, score_run
from nfsd_gs.score.__main__ import main as score_main

pytestmark = pytest.mark.slow
torch.set_num_threads(1)

SMALL = JudgeSettings(views=4, resolution=32, align_yaws=8, align_scales=(0.65, 1.3, 3))
TINY_RUN = ("camera.batch_size=1", "init.num_points=60", "camera.resolution=32")
PROMPT, SEED, STEPS = "a red cone", 3, 2


def numbers(scores: dict) -> dict:
    return {k: v for k, v in scores.items() if isinstance(v, (int, float))}


@pytest.fixture(scope="module")
def eval_row(tmp_path_factory):
    """The evaluation's row of one run (nfsd@7.5, the default preset)."""
    out = tmp_path_factory.mktemp("eval")
    settings = runner.Settings(config="default", overrides=TINY_RUN, steps=STEPS, seeds=(SEED,),
                               views=SMALL.views, resolution=SMALL.resolution, out=out,
                               align_yaws=SMALL.align_yaws, align_scales=SMALL.align_scales)
    judge = WorldJudge(load_judge(None, "cpu"), settings.judging, "cpu")
    variant = Variant("nfsd@7.5", VARIANTS["nfsd@7.5"])
    row = runner.evaluate_one(settings, variant, PROMPT, SEED, judge, PriorCache())
    config = runner.run_config(settings, variant, PROMPT, SEED, out)
    return row, config


@pytest.fixture(scope="module")
def catalogue_result(tmp_path_factory):
    """The catalogue worker's result for the same line (no Ray: the actor's class itself)."""
    root = tmp_path_factory.mktemp("catalogue")
    defaults = Defaults("default", (*TINY_RUN, f"steps={STEPS}"), root)
    config = line_config(Line(1, PROMPT, "cone", SEED), defaults)
    return AssetTrainer(judging=SMALL).make(config), config, root / "cone"


def test_every_judge_uses_the_evaluations_settings_by_default():
    assert AssetTrainer().judging == JudgeSettings() == runner.Settings().judging
    assert WorldJudge().settings == JudgeSettings()


def test_the_catalogues_scores_equal_the_evaluations(eval_row, catalogue_result):
    row, eval_config = eval_row
    result, line_config_, _ = catalogue_result
    assert config_signature(line_config_) == config_signature(eval_config)  # the same run
    assert result["status"] == "done" and row["error"] is None, (result, row)
    expected = {**numbers(row["ours"]), **row["alignment"]}
    assert result["score"] == expected
    assert {"shape_acc", "colour_acc", "iou", "colour_de", "scale", "yaw_deg"} <= set(expected)


def test_the_score_command_reads_the_same_model_back(catalogue_result, capsys):
    """``python -m nfsd_gs.score`` on the catalogue's run folder: the model read back from
    model.ply through the representation protocol scores as it did in memory."""
    result, _, run_dir = catalogue_result
    assert score_main([str(run_dir), "--views", "4", "--align-yaws", "8",
                       "--align-scales", "0.65,1.3,3", "--threads", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["run"] == str(run_dir) and printed["prompt"] == PROMPT
    assert len(printed["judged"]) == 4
    # the command renders at the judge's own 64 pixels, the catalogue here at 32: the judge's
    # verdicts are not compared; its settings are, through score_run
    direct = score_run(run_dir, SMALL)
    assert numbers(direct) == result["score"]


def test_the_score_command_refuses_what_it_cannot_judge(tmp_path, capsys):
    assert score_main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: '{tmp_path}' is not a run folder (no config.yaml)"
    (tmp_path / "config.yaml").write_text("prompt: a DSLR photo of a corgi\n")
    assert score_main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "corgi" in err and len(err.splitlines()) == 1
    assert score_main([str(tmp_path), "--align-scales", "1,2"]) == 2
    assert "--align-scales '1,2' must be LOW,HIGH,COUNT" in capsys.readouterr().err
