"""The judge: its API, its file format and (when shipped) its accuracy on ground truth."""

import pytest
import torch

from nfsd_gs.cameras import orbit_cameras
from nfsd_gs.errors import ConfigError, PriorLoadError
from nfsd_gs.shapeworld import JUDGE_DIR
from nfsd_gs.shapeworld.judge import Judge, JudgeNet, JudgeTrainConfig, train_judge
from nfsd_gs.shapeworld.world import COLOUR_NAMES, SHAPES, render_object

SHIPPED = (JUDGE_DIR / "judge.safetensors").is_file()


def test_net_shapes_and_round_trip(tmp_path):
    torch.manual_seed(0)
    judge = Judge(JudgeNet(width=4), list(SHAPES), list(COLOUR_NAMES),
                  info={"shapes": list(SHAPES), "colours": list(COLOUR_NAMES), "width": 4})
    judge.save(tmp_path)
    loaded = Judge.load(tmp_path)
    images = torch.rand(3, 48, 48, 3)  # any size is resized to 64x64
    shapes, colours, shape_probs, colour_probs = loaded.classify(images)
    assert len(shapes) == len(colours) == 3 and shapes[0] in SHAPES and colours[0] in COLOUR_NAMES
    assert shape_probs.shape == (3, len(SHAPES)) and colour_probs.shape == (3, len(COLOUR_NAMES))
    assert torch.allclose(shape_probs.sum(-1), torch.ones(3))
    assert torch.allclose(judge.logits(images)[0], loaded.logits(images)[0], atol=1e-6)


def test_bad_input_and_missing_weights(tmp_path):
    judge = Judge(JudgeNet(width=4), list(SHAPES), list(COLOUR_NAMES))
    with pytest.raises(ConfigError, match=r"\(2, 3, 64, 64\)"):
        judge.classify(torch.rand(2, 3, 64, 64))
    with pytest.raises(PriorLoadError, match="train-judge"):
        Judge.load(tmp_path / "nowhere")


def test_training_runs(tmp_path):
    config = JudgeTrainConfig(train_images=48, test_images=16, epochs=1, batch_size=16, width=4)
    judge = train_judge(tmp_path, config)
    assert set(judge.info["held_out"]) == {"shape_accuracy", "colour_accuracy"}
    assert Judge.load(tmp_path).shapes == list(SHAPES)


@pytest.mark.skipif(not SHIPPED, reason="no judge shipped in nfsd_gs/assets/judge")
def test_shipped_judge_is_accurate_on_ground_truth():
    judge = Judge.load()
    cams = orbit_cameras(torch.tensor([20.0, 150.0]), torch.tensor([15.0, 30.0]),
                         torch.tensor([2.75, 2.75]), torch.tensor([55.0, 55.0]))
    shape_hits = colour_hits = total = 0
    for shape in SHAPES:
        for colour in COLOUR_NAMES:
            images = render_object(shape, colour, cams, background=(1.0, 1.0, 1.0))
            shapes, colours, _, _ = judge.classify(images)
            shape_hits += sum(s == shape for s in shapes)
            colour_hits += sum(c == colour for c in colours)
            total += len(shapes)
    assert shape_hits / total >= 0.9 and colour_hits / total >= 0.95
    assert judge.info["held_out"]["shape_accuracy"] >= 0.9
