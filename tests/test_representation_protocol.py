"""The trainer talks to a representation only through its protocol (issue 11).

A toy backend that is neither Gaussians nor a NeRF is registered under a
representation name and trained, checkpointed, resumed and exported by the
unchanged trainer: adding a backend is one module plus one registry entry.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nfsd_gs import representations
from nfsd_gs.config import load_config
from nfsd_gs.representations import GaussianModel, Representation, RenderOutput
from nfsd_gs.train.__main__ import main
from nfsd_gs.train.loop import train
from nfsd_gs.train.resume import resume_run
from nfsd_gs.train.run import start_run


class FlatDisc(torch.nn.Module):
    """A camera-facing disc of one learnable colour: the smallest possible backend."""

    def __init__(self):
        super().__init__()
        self.color_logit = torch.nn.Parameter(torch.zeros(3))
        self.exported = 0

    def render(self, cameras, width, height, background) -> RenderOutput:
        b = len(cameras)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width),
                                indexing="ij")
        alpha = ((xs ** 2 + ys ** 2) < 0.5).float()[None, :, :, None].expand(b, -1, -1, 1)
        color = torch.sigmoid(self.color_logit).view(1, 1, 1, 3)
        rgb = alpha * color + (1 - alpha) * background.view(b, 1, 1, 3)
        return RenderOutput(rgb=rgb, alpha=alpha, depth=torch.zeros_like(alpha))

    def make_optimizers(self):
        return {"color": torch.optim.Adam([self.color_logit], lr=0.1)}

    def make_densifier(self, config, optimizers):
        return None

    def update(self, step, total_steps, optimizers):
        pass

    def finish(self):
        pass

    def regularization(self, step, total_steps):
        return {}

    count_name = "discs"

    @property
    def num_primitives(self) -> int:
        return 1

    def gaussians(self):
        return None

    def mesh(self, settings):
        raise NotImplementedError("a disc has no volume")

    def export(self, run_dir: Path, output) -> Path:
        self.exported += 1
        path = Path(run_dir) / "disc.txt"
        path.write_text(" ".join(f"{v:.6f}" for v in torch.sigmoid(self.color_logit).tolist()))
        return path


@pytest.fixture
def disc_backend(monkeypatch):
    """Register the toy backend under the name "nerf" (the config's Literal allows it)."""
    monkeypatch.setitem(representations.BACKENDS, "nerf", lambda config, device: FlatDisc())


def test_both_backends_satisfy_the_protocol():
    config = load_config("tiny_test", ["prompt=a red cube"])
    gaussians = representations.build_representation(config, torch.device("cpu"))
    assert isinstance(gaussians, GaussianModel) and isinstance(gaussians, Representation)
    assert gaussians.num_primitives == 200 and gaussians.gaussians() is gaussians.splats
    from nfsd_gs.representations.nerf import NerfField

    nerf = NerfField.from_config(load_config("tiny_test", ["representation=nerf",
                                                            "nerf.log2_table_size=8"]), "cpu")
    assert isinstance(nerf, Representation)
    assert nerf.gaussians() is None  # it counts occupied cells: all until the first refresh
    assert nerf.count_name == "occupied_cells" and nerf.num_primitives == 64 ** 3
    assert nerf.make_densifier(config.densify, nerf.make_optimizers()) is None


def test_a_new_backend_trains_resumes_and_exports_through_the_unchanged_trainer(
        tmp_path, disc_backend):
    overrides = ["prompt=a red cube", "representation=nerf", f"output.root={tmp_path}",
                 "steps=4", "output.checkpoint_every=2"]
    run, run_dir = start_run(load_config("tiny_test", overrides))
    assert isinstance(run.model, FlatDisc) and run.densifier is None
    before = run.model.color_logit.detach().clone()
    exported = train(run, run_dir, progress=False)
    assert exported == run_dir / "disc.txt" and exported.is_file()
    assert not torch.equal(run.model.color_logit.detach(), before)  # the optimizer moved it
    assert '"num_primitives": 1' in (run_dir / "metrics.jsonl").read_text()

    resumed, _ = resume_run(run_dir, [])
    assert resumed.step == 4
    torch.testing.assert_close(resumed.model.color_logit, run.model.color_logit)


def test_the_cli_runs_a_new_backend(tmp_path, disc_backend):
    code = main(["--config", "tiny_test", "--no-progress", "--output-root", str(tmp_path),
                 "--prompt", "a red cube", "representation=nerf", "steps=2"])
    assert code == 0 and (tmp_path / "a_red_cube" / "disc.txt").is_file()
