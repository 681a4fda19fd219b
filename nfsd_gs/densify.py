"""Adaptive density control: gsplat's strategies, unmodified, plus a count cap.

The strategies' hyper-parameters are gsplat's own dataclasses, embedded in the
config (``densify.default`` is a ``gsplat.strategy.DefaultStrategy``); the
presets in :class:`nfsd_gs.config.DensifyConfig` suit score-distillation
gradients.  This module only wires a strategy's pre/post-backward hooks and
its external state to the trainer, and enforces ``densify.max_gaussians``.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import torch
from gsplat.strategy import ops as strategy_ops

from .config import DensifyConfig
from .errors import ConfigError


class Densifier:
    """Runs a gsplat strategy (or none) on a ParameterDict and its optimizers."""

    def __init__(self, config: DensifyConfig, params: torch.nn.ParameterDict,
                 optimizers: Mapping[str, torch.optim.Optimizer], scene_scale: float):
        self.config = config
        self.params = params
        self.optimizers = dict(optimizers)
        self.strategy = self._make_strategy(config, params)
        self.state: Dict[str, Any] = {}
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

    def post_backward(self, step: int, info: Dict[str, Any]) -> None:
        """The strategy's refinement for ``step``, then the cap on the count."""
        if self.strategy is None:
            return
        if self.config.strategy == "mcmc":
            lr = self.optimizers["means"].param_groups[0]["lr"]
            self.strategy.step_post_backward(self.params, self.optimizers, self.state, step, info,
                                             lr=lr)
        else:
            self.strategy.step_post_backward(self.params, self.optimizers, self.state, step, info,
                                             packed=False)
        self.enforce_cap()

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
