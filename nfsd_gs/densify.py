"""Adaptive density control: gsplat's strategies, plus a count cap, the opacity reset
gsplat 1.5.3 never makes, and optional 2D-gradient statistics.

The strategies' hyper-parameters are gsplat's own dataclasses, embedded in the
config (``densify.default`` is a ``gsplat.strategy.DefaultStrategy``); the
presets in :class:`nfsd_gs.config.DensifyConfig` suit score-distillation
gradients.  This module wires a strategy's pre/post-backward hooks and its
external state to the trainer, enforces ``densify.max_gaussians`` and:

* **the opacity reset** of ``DefaultStrategy.reset_every``: gsplat 1.5.3 tests
  ``step % self.reset_every == 0 & step > 0`` (strategy/default.py, line 195).
  ``&`` binds tighter than the comparisons, so that is the chained comparison
  ``step % reset_every == (0 & step) > 0``, whose second half ``0 > 0`` is always
  false: the reset never happens (gsplat issue #797, fixed by PR #776 after
  1.5.3). :meth:`Densifier.post_backward` makes it with gsplat's own
  ``ops.reset_opa`` under the intended condition (``step > 0``, ``step %
  reset_every == 0``, before ``refine_stop_iter``, to ``2 * prune_opa`` as gsplat
  does). ``reset_opa`` only clamps opacities and zeroes their Adam moments, so a
  gsplat that resets too makes ours a no-op: correct on either version;
* **grad2d statistics** (``densify.log_grad2d``): the per-Gaussian mean 2D gradient
  that ``grow_grad2d`` is compared with, summarised just before each refine step.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import torch
from gsplat.strategy import DefaultStrategy
from gsplat.strategy import ops as strategy_ops
from torch import Tensor

from .config import DensifyConfig
from .errors import ConfigError

#: Thresholds whose share of Gaussians above is logged with ``densify.log_grad2d``: gsplat's
#: (and GaussianDreamer's) 2e-4, LucidDreamer's 7.5e-4, threestudio's and DreamGaussian's 0.01,
#: and the range NFSD's values actually span on the bundled prior (medians 0.004 to 0.3,
#: 90th percentiles near 1: docs/eval/levers.md).
GRAD2D_LADDER = (2e-4, 7.5e-4, 1e-2, 0.1, 0.3, 0.8, 2.0)
#: Quantiles of the per-Gaussian mean grad2d that are logged.
GRAD2D_QUANTILES = (0.5, 0.9, 0.99)


class Densifier:
    """Runs a gsplat strategy (or none) on a ParameterDict and its optimizers."""

    def __init__(self, config: DensifyConfig, params: torch.nn.ParameterDict,
                 optimizers: Mapping[str, torch.optim.Optimizer], scene_scale: float):
        self.config = config
        self.params = params
        self.optimizers = dict(optimizers)
        self.strategy = self._make_strategy(config, params)
        self.state: Dict[str, Any] = {}
        self.grad2d_stats: Dict[str, Tensor] = {}  # the latest refine step's (log_grad2d)
        if self.strategy is not None:
            self.strategy.check_sanity(params, self.optimizers)
            if config.strategy == "mcmc":
                self.state = self.strategy.initialize_state()
            else:
                self.state = self.strategy.initialize_state(scene_scale=scene_scale)

    @staticmethod
    def _make_strategy(config: DensifyConfig, params: torch.nn.ParameterDict):
        if config.strategy == "none":
            return None
        if config.strategy == "mcmc":
            if params["means"].device.type != "cuda":
                raise ConfigError("densify.strategy=mcmc needs CUDA (gsplat's relocation kernel); "
                                  "use densify.strategy=default on CPU")
            return config.mcmc
        return config.default

    def pre_backward(self, step: int, info: Dict[str, Any]) -> None:
        if self.strategy is not None:
            self.strategy.step_pre_backward(self.params, self.optimizers, self.state, step, info)

    def post_backward(self, step: int, info: Dict[str, Any]) -> Dict[str, Tensor]:
        """The strategy's refinement for ``step``, the opacity reset, then the cap on the
        count; returns the latest grad2d statistics (``densify.log_grad2d``; else ``{}``)."""
        if self.strategy is None:
            return {}
        if self.config.strategy == "mcmc":
            lr = self.optimizers["means"].param_groups[0]["lr"]
            self.strategy.step_post_backward(self.params, self.optimizers, self.state, step, info,
                                             lr=lr)
        else:
            if self.config.log_grad2d and self.refines_at(step):
                self.grad2d_stats = grad2d_statistics(self.state, self.strategy.grow_grad2d, step)
            self.strategy.step_post_backward(self.params, self.optimizers, self.state, step, info,
                                             packed=False)
            if self.resets_opacity_at(step):
                strategy_ops.reset_opa(self.params, self.optimizers, self.state,
                                       value=self.strategy.prune_opa * 2.0)
        self.enforce_cap()
        return self.grad2d_stats

    def refines_at(self, step: int) -> bool:
        """Whether ``DefaultStrategy`` grows and prunes after ``step`` (its own condition)."""
        s = self.strategy
        return (isinstance(s, DefaultStrategy) and s.refine_start_iter < step < s.refine_stop_iter
                and step % s.refine_every == 0
                and step % s.reset_every >= s.pause_refine_after_reset)

    def resets_opacity_at(self, step: int) -> bool:
        """Whether ``DefaultStrategy``'s opacity reset is due after ``step``: what gsplat
        1.5.3 means by ``step % reset_every == 0 & step > 0`` (see the module docstring)."""
        s = self.strategy
        return (isinstance(s, DefaultStrategy) and 0 < step < s.refine_stop_iter
                and step % s.reset_every == 0)

    @torch.no_grad()
    def enforce_cap(self) -> int:
        """Remove the least opaque Gaussians beyond ``max_gaussians``; returns how many went."""
        excess = self.params["means"].shape[0] - self.config.max_gaussians
        if excess <= 0:
            return 0
        least_opaque = torch.topk(self.params["opacities"], excess, largest=False).indices
        mask = torch.zeros_like(self.params["opacities"], dtype=torch.bool)
        mask[least_opaque] = True
        # MCMC's state is a binomial table, not per Gaussian: nothing of it to remove
        per_gaussian = {} if self.config.strategy == "mcmc" else self.state
        strategy_ops.remove(self.params, self.optimizers, per_gaussian, mask)
        return excess

    def state_dict(self) -> Dict[str, Any]:
        return {k: (v.detach().clone() if isinstance(v, torch.Tensor) else v)
                for k, v in self.state.items()}

    def load_state_dict(self, state: Optional[Mapping[str, Any]]) -> None:
        if state is None:
            return
        device = self.params["means"].device
        self.state = {k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                      for k, v in state.items()}


@torch.no_grad()
def grad2d_statistics(state: Mapping[str, Any], threshold: float, step: int) -> Dict[str, Tensor]:
    """What ``DefaultStrategy._grow_gs`` is about to compare with ``grow_grad2d``: the mean
    2D-gradient norm per Gaussian, ``state["grad2d"] / max(state["count"], 1)`` [N]
    (screen space normalised to [-1, 1], times the number of cameras, as gsplat
    accumulates it), summarised as 0-d tensors (one host sync, for the Gaussians seen):

    * ``grad2d_q50`` ... ``grad2d_q99``: quantiles over the Gaussians seen since the last
      refine (count > 0);
    * ``grad2d_above_<t>``: share of ALL Gaussians above each threshold t of
      :data:`GRAD2D_LADDER` (what that ``grow_grad2d`` would grow), ``grad2d_grown`` for
      the configured ``threshold``;
    * ``grad2d_seen``: share seen; ``grad2d_step``: the refine step they belong to.

    Taken before the refine step's own update of the accumulators (one step of the
    interval short).
    """
    if state.get("grad2d") is None:
        return {}
    count = state["count"]
    grads = state["grad2d"] / count.clamp_min(1)  # [N]
    seen = grads[count > 0]
    stats = {"grad2d_step": torch.tensor(float(step)),
             "grad2d_seen": (count > 0).float().mean(),
             "grad2d_grown": (grads > threshold).float().mean()}
    if seen.numel():
        levels = torch.tensor(GRAD2D_QUANTILES, device=seen.device, dtype=seen.dtype)
        for q, value in zip(GRAD2D_QUANTILES, torch.quantile(seen, levels)):
            stats[f"grad2d_q{round(100 * q)}"] = value
    for t in GRAD2D_LADDER:
        stats[f"grad2d_above_{t:g}"] = (grads > t).float().mean()
    return stats
