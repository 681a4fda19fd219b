"""MCMC densification (densify.strategy=mcmc, gsplat's MCMCStrategy): how the trainer drives it.

gsplat's relocation kernel needs CUDA, so on the CPU a recording subclass of the real
strategy stands in for its refinement (its hyper-parameters and state are gsplat's own),
and a GPU test trains with the real one."""

from __future__ import annotations

import pytest
import torch
from gsplat.strategy import MCMCStrategy
from gsplat.strategy import ops as strategy_ops

from nfsd_gs.config import load_config
from nfsd_gs.densify import Densifier
from nfsd_gs.errors import ConfigError
from nfsd_gs.representations import build_representation
from nfsd_gs.train.run import build_run
from nfsd_gs.train.step import training_step

MCMC = ["prompt=a red cube", "densify.strategy=mcmc", "densify.max_gaussians=230",
        "densify.mcmc.cap_max=300", "densify.mcmc.refine_start_iter=1",
        "densify.mcmc.refine_every=1", "steps=4"]


class RecordingMCMC(MCMCStrategy):
    """gsplat's MCMCStrategy, but its post-backward step (relocation: CUDA) records its
    arguments and duplicates the 20 most opaque Gaussians instead (gsplat's own op)."""

    def __init__(self, config: MCMCStrategy):
        super().__init__(**{k: getattr(config, k) for k in config.__dataclass_fields__})
        self.calls = []

    def initialize_state(self, **kwargs):
        self.calls.append(("initialize_state", kwargs))
        return super().initialize_state(**kwargs)

    def step_post_backward(self, params, optimizers, state, step, info, lr):
        self.calls.append(("post_backward", step, lr, params["means"].shape[0]))
        grow = torch.zeros_like(params["opacities"], dtype=torch.bool)
        grow[torch.topk(params["opacities"], 20).indices] = True
        strategy_ops.duplicate(params, optimizers, {}, grow)  # MCMC keeps no per-Gaussian state


def test_mcmc_on_a_cpu_is_one_clear_error():
    config = load_config("tiny_test", MCMC)
    model = build_representation(config, torch.device("cpu"))
    with pytest.raises(ConfigError, match="densify.strategy=mcmc needs CUDA"):
        model.make_densifier(config.densify, model.make_optimizers())


def test_the_trainer_drives_mcmc_with_the_means_learning_rate_and_the_cap(monkeypatch):
    strategies = []

    def make_strategy(config, params):
        strategies.append(RecordingMCMC(config.mcmc))
        return strategies[-1]

    monkeypatch.setattr(Densifier, "_make_strategy", staticmethod(make_strategy))
    run = build_run(load_config("tiny_test", MCMC))
    (strategy,) = strategies
    assert strategy.cap_max == 300 and strategy.refine_every == 1  # the preset's, gsplat's names
    assert strategy.calls == [("initialize_state", {})]  # MCMC takes no scene scale
    for step in range(3):
        training_step(run, step)
    posts = [call for call in strategy.calls if call[0] == "post_backward"]
    assert [call[1] for call in posts] == [0, 1, 2]
    # the learning rate of the means at that step (their schedule decays it)
    lrs = [call[2] for call in posts]
    assert lrs[0] > lrs[1] > lrs[2] > 0
    assert lrs[2] == run.optimizers["means"].param_groups[0]["lr"]
    # 200 + 20 duplicates, then 240 > densify.max_gaussians = 230: the cap prunes after it
    assert [call[3] for call in posts] == [200, 220, 230]
    assert run.model.num_primitives == 230
    assert all(o.param_groups[0]["params"][0].shape[0] == 230 for o in run.optimizers.values())


@pytest.mark.gpu
def test_mcmc_trains_on_cuda_within_its_caps():
    config = load_config("tiny_test", [*MCMC, "device=cuda", "densify.max_gaussians=250"])
    run = build_run(config)
    counts = []
    for step in range(4):
        stats = training_step(run, step)
        assert "nonfinite" not in stats
        counts.append(run.model.num_primitives)
    assert counts[-1] > 200  # MCMC grew the set (5 % per refinement) ...
    assert max(counts) <= 250  # ... within densify.max_gaussians (and cap_max = 300)
