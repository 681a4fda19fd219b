"""Guidance methods are strategies behind one interface (issue 23): a new method is one class
and one registry entry, trained, checkpointed and resumed by the unchanged trainer, with
ONE batched U-Net call per step over the branches it names."""

from __future__ import annotations

import pytest
import torch

from nfsd_gs import guidance
from nfsd_gs.checkpoint import Checkpoint
from nfsd_gs.config import GuidanceConfig, load_config
from nfsd_gs.formats.ply import load_ply
from nfsd_gs.guidance import METHODS, DistillationMethod, GuidanceMethod, ScoreDistillation
from nfsd_gs.guidance.prior import DiffusionPrior
from nfsd_gs.render.sh import SH_C0
from nfsd_gs.train.__main__ import main
from nfsd_gs.train.resume import resume_run

RED = torch.tensor([1.0, 0.0, 0.0])


class PaintRed(DistillationMethod):
    """A toy method: the direction that pulls every render towards pure red (in the pixel
    prior's x0 = 2 rgb - 1), read from its own model's "prediction" (x0 itself). It asks the
    U-Net for the prompt branch only, and counts its steps in its checkpointed state."""

    branches = ("cond",)

    def __init__(self, prior, config):
        super().__init__(prior, config)
        self.steps = 0

    def observe(self, z_t, t, x0, prompts, cameras, progress=0.0):
        self.steps += 1
        return {"x0": x0.detach()}, {"toy_steps": torch.tensor(float(self.steps))}

    def direction(self, eps, noise, t):
        target = (2 * RED - 1).to(eps["x0"]).view(1, 3, 1, 1)
        assert set(eps) == {"cond", "x0"}  # the one branch it asked for, and its own
        return eps["x0"] - target

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


@pytest.fixture
def paint_red(monkeypatch):
    """Register the toy under the name "sds" (the config's Literal allows it), and count the
    rows of every U-Net call."""
    monkeypatch.setitem(guidance.METHODS, "sds", PaintRed)
    rows = []
    original = DiffusionPrior.predict_noise

    def counted(self, z_t, t, embeddings):
        rows.append(z_t.shape[0])
        return original(self, z_t, t, embeddings)

    monkeypatch.setattr(DiffusionPrior, "predict_noise", counted)
    return rows


def redness(path) -> float:
    """Mean red minus mean green-and-blue of the Gaussians' base colours in a model.ply."""
    rgb = (0.5 + SH_C0 * load_ply(path)["sh0"][:, 0, :]).clamp(0, 1)  # [N, 3]
    return float(rgb[:, 0].mean() - rgb[:, 1:].mean())


def test_the_methods_satisfy_the_interface():
    assert set(METHODS) == {"nfsd", "sds", "vsd"}
    config = load_config("tiny_test")
    prior = DiffusionPrior.load(config.prior, torch.device("cpu"))
    for name, branches in (("nfsd", ["cond", "uncond", "negative"]), ("sds", ["cond", "uncond"])):
        distillation = ScoreDistillation(prior, GuidanceConfig(method=name), 10)
        assert isinstance(distillation.method, GuidanceMethod)
        assert isinstance(distillation.method, METHODS[name])
        assert distillation.branches == branches and distillation.state_dict() == {}


def test_a_new_method_trains_checkpoints_and_resumes_through_the_unchanged_trainer(
        tmp_path, paint_red):
    args = ["--config", "tiny_test", "--prompt", "a red cube", "--no-progress",
            "--output-root", str(tmp_path), "guidance.method=sds", "init.color=[0.5,0.5,0.5]",
            "steps=4", "output.checkpoint_every=2", "output.name=run"]
    assert main(args) == 0
    run_dir = tmp_path / "run"
    # one U-Net call per step, one row per view: the toy's single branch
    assert paint_red == [2] * 4
    assert redness(run_dir / "model.ply") > 0.01  # grey Gaussians turned towards red (SDS: < 0)
    checkpoint = Checkpoint.load(run_dir / "checkpoints" / "step_000004.pt")
    assert checkpoint.guidance == {"steps": 4}
    assert '"toy_steps": 4.0' in (run_dir / "metrics.jsonl").read_text()

    run, _ = resume_run(run_dir, ["steps=6"])
    assert isinstance(run.guidance.method, PaintRed) and run.guidance.method.steps == 4


def test_an_unknown_method_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delitem(guidance.METHODS, "sds")
    assert main(["--config", "tiny_test", "--prompt", "a red cube", "--no-progress",
                 "--output-root", str(tmp_path), "guidance.method=sds"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: config key 'guidance.method': 'sds' must be one of nfsd, vsd")
    assert not any(tmp_path.iterdir())
