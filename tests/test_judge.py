"""The judge: its API, its file format and (when shipped) its accuracy on ground truth."""

import pytest
import torch

from nfsd_gs.cameras import orbit_cameras
from nfsd_gs.errors import ConfigError, PriorLoadError
from nfsd_gs.shapeworld import JUDGE_DIR
from nfsd_gs.shapeworld.judge import (HEADS, Judge, JudgeNet, JudgeTrainConfig, scene_labels,
                                      train_judge)
from nfsd_gs.shapeworld.vocabulary import ACCENT_LABELS, EVAL_SPECS, SPLITS, split_specs
from nfsd_gs.shapeworld.world import COLOUR_NAMES, SHAPES, object_scenes, render_spec

SHIPPED = (JUDGE_DIR / "judge.safetensors").is_file()


def test_net_shapes_and_round_trip(tmp_path):
    torch.manual_seed(0)
    judge = Judge(JudgeNet(width=4), list(SHAPES), list(COLOUR_NAMES), info={"width": 4})
    judge.save(tmp_path)
    loaded = Judge.load(tmp_path)
    assert loaded.heads == HEADS and loaded.classes["accent"] == list(ACCENT_LABELS)
    images = torch.rand(3, 48, 48, 3)  # any size is resized to 64x64
    shapes, colours, shape_probs, colour_probs = loaded.classify(images)
    assert len(shapes) == len(colours) == 3 and shapes[0] in SHAPES and colours[0] in COLOUR_NAMES
    assert shape_probs.shape == (3, len(SHAPES)) and colour_probs.shape == (3, len(COLOUR_NAMES))
    assert torch.allclose(shape_probs.sum(-1), torch.ones(3))
    verdict = loaded.verdict(images)
    assert set(verdict) == set(HEADS) and all(len(v) == 3 for v in verdict.values())
    assert verdict["shape"] == shapes and all(a in ACCENT_LABELS for a in verdict["accent"])
    probs = loaded.probabilities(images)
    assert probs["accent"].shape == (3, len(ACCENT_LABELS))
    for head in HEADS:
        assert torch.allclose(judge.logits(images)[head], loaded.logits(images)[head], atol=1e-6)


def test_judge_saved_before_the_accent_head_still_loads(tmp_path):
    old = Judge(JudgeNet(width=4, colours=8, accents=0), list(SHAPES), list(COLOUR_NAMES[:8]),
                info={"width": 4})
    old.save(tmp_path)
    loaded = Judge.load(tmp_path)
    assert loaded.heads == ("shape", "colour") and "accent" not in loaded.verdict(torch.rand(1, 64, 64, 3))


def test_bad_input_and_missing_weights(tmp_path):
    judge = Judge(JudgeNet(width=4), list(SHAPES), list(COLOUR_NAMES))
    with pytest.raises(ConfigError, match=r"\(2, 3, 64, 64\)"):
        judge.classify(torch.rand(2, 3, 64, 64))
    with pytest.raises(PriorLoadError, match="train-judge"):
        Judge.load(tmp_path / "nowhere")


def test_training_runs_and_reports_every_head_per_split(tmp_path):
    config = JudgeTrainConfig(train_images=48, test_images=16, epochs=1, batch_size=16, width=4)
    judge = train_judge(tmp_path, config)
    assert set(judge.info["held_out"]) == set(SPLITS)
    for scores in judge.info["held_out"].values():
        assert set(scores) == {"shape_accuracy", "colour_accuracy", "accent_accuracy"}
    loaded = Judge.load(tmp_path)
    assert loaded.shapes == list(SHAPES) and loaded.heads == HEADS


def test_labels_of_two_tone_scenes():
    scenes = object_scenes("cube", "brown", 1, accent="yellow", pattern="band")
    label = scene_labels(scenes)["accent"].item()
    assert ACCENT_LABELS[label] == "yellow band"
    assert scene_labels(object_scenes("cube", "red", 1))["accent"].item() == 0


@pytest.mark.skipif(not SHIPPED, reason="no judge shipped in nfsd_gs/assets/judge")
def test_shipped_judge_is_accurate_on_ground_truth():
    """Every solid prompt and the two-tone evaluation set (when the judge has the accent
    head), from two views: every head right on >= 90 % of the views."""
    judge = Judge.load()
    cams = orbit_cameras(torch.tensor([20.0, 150.0]), torch.tensor([15.0, 30.0]),
                         torch.tensor([2.75, 2.75]), torch.tensor([55.0, 55.0]))
    specs = split_specs("solid")
    if "accent" in judge.heads:
        specs += list(EVAL_SPECS["two-tone"])
    hits = {head: 0 for head in judge.heads}
    for spec in specs:
        images, _ = render_spec(spec, cams, torch.ones(2, 3))
        verdict = judge.verdict(images)
        truth = {"shape": spec.shape, "colour": spec.colour, "accent": spec.accent_label}
        for head in judge.heads:
            hits[head] += sum(got == truth[head] for got in verdict[head])
    for head in judge.heads:
        assert hits[head] / (2 * len(specs)) >= 0.9, (head, hits)


# ------------------------------------------------------------------ the end-of-run verdict (issue 27)


_WORLD_JUDGE = []


def truth_verdicts(prompt: str) -> dict:
    """The shipped judge's verdicts on 8 ground-truth renders of ``prompt``'s object, on the
    evaluation orbit every model is judged on (``WorldJudge.truth``)."""
    from nfsd_gs.config import resolve_config
    from nfsd_gs.score import WorldJudge

    if not _WORLD_JUDGE:
        _WORLD_JUDGE.append(WorldJudge())
    scores, _ = _WORLD_JUDGE[0].truth(resolve_config(None, prompt))
    return scores["verdicts"]


@pytest.mark.skipif(not SHIPPED, reason="no shipped judge")
def test_the_verdict_line_of_a_two_tone_object():
    from nfsd_gs.score import verdict_line
    from nfsd_gs.shapeworld import parse_prompt

    asked = parse_prompt("a brown cube with a yellow top")
    assert verdict_line(asked, truth_verdicts("a brown cube with a yellow top")) == \
        '8/8 views look like the "brown cube with a yellow top" asked for'
    # the object with its accent on a band instead: the accent is what differs, and says so
    band = truth_verdicts("a brown cube with a yellow band")
    assert verdict_line(asked, band) == (
        '0/8 views look like the "brown cube with a yellow top" asked for (shape right in 8/8, '
        'colour in 8/8, accent in 0/8); they look like "brown cube with a yellow band" (8)')


@pytest.mark.skipif(not SHIPPED, reason="no shipped judge")
def test_the_verdict_line_of_a_solid_object():
    from nfsd_gs.score import verdict_line
    from nfsd_gs.shapeworld import parse_prompt

    asked = parse_prompt("a cyan cylinder")
    assert verdict_line(asked, truth_verdicts("a cyan cylinder")) == \
        '8/8 views look like the "cyan cylinder" asked for'
    pyramid = truth_verdicts("an orange pyramid")
    assert verdict_line(asked, pyramid) == (
        '0/8 views look like the "cyan cylinder" asked for (shape right in 0/8, colour in 0/8); '
        'they look like "orange pyramid" (8)')


def test_the_verdict_line_counts_views_and_ignores_an_accent_nobody_asked_for():
    """Issue 27: a solid prompt's verdict named a "yellow band" the judge's accent head saw,
    and its majority count did not match its percentages."""
    from nfsd_gs.score import verdict_line
    from nfsd_gs.shapeworld import parse_prompt

    verdicts = {"shape": ["cylinder"] * 6 + ["cube"] * 2,
                "colour": ["cyan"] * 5 + ["blue"] * 3,
                "accent": ["yellow band"] * 4 + ["none"] * 4}
    assert verdict_line(parse_prompt("a cyan cylinder"), verdicts) == (
        '5/8 views look like the "cyan cylinder" asked for (shape right in 6/8, colour in 5/8); '
        'the other 3 look like "blue cube" (2), "blue cylinder" (1)')
    verdicts["accent"] = ["yellow band"] * 8
    verdicts["colour"] = ["cyan"] * 7 + ["blue"]
    verdicts["shape"] = ["cylinder"] * 8
    assert verdict_line(parse_prompt("a cyan cylinder"), verdicts) == (
        '7/8 views look like the "cyan cylinder" asked for (shape right in 8/8, colour in 7/8); '
        'the other looks like "blue cylinder" (1)')
    two_tone = {"shape": ["cube"] * 4, "colour": ["brown"] * 4,
                "accent": ["yellow top", "yellow top", "none", "black top"]}
    assert verdict_line(parse_prompt("a brown cube with a yellow top"), two_tone) == (
        '2/4 views look like the "brown cube with a yellow top" asked for (shape right in 4/4, '
        'colour in 4/4, accent in 2/4); the other 2 look like "brown cube" (1), '
        '"brown cube with a black top" (1)')
