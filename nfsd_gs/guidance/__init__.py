"""Score distillation from a frozen diffusion prior: NFSD (default), SDS and VSD.

:class:`ScoreDistillation` turns a batch of encoded renders x0 into a loss
whose gradient on x0 is the distillation direction; the pure math lives in
``nfsd.py``, ``sds.py``, ``vsd.py`` (with VSD's trained LoRA), ``cfg.py`` and
``schedule.py``, the model in ``prior.py``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, get_args

import torch
from torch import Tensor

from ..cameras import Cameras
from ..config import GuidanceConfig, GuidanceMethod
from ..errors import ConfigError
from ..utils.timing import NO_TIMER
from .nfsd import nfsd_direction
from .prior import DiffusionPrior
from .schedule import sample_timesteps, timestep_weights
from .sds import sds_direction
from .vsd import CameraLora, vsd_direction

__all__ = ["DiffusionPrior", "ScoreDistillation", "distillation_loss"]

EMPTY_PROMPT = ""


def distillation_loss(x0: Tensor, grad: Tensor) -> Tensor:
    """0.5 ||x0 - sg(x0 - grad)||^2 / B: its gradient on x0 is exactly grad / B.

    x0, grad [B, C, h, w]; the standard way to inject a score-distillation
    gradient through autograd (DreamFusion's reparametrization).
    """
    target = (x0 - grad).detach()
    return 0.5 * (x0 - target).pow(2).sum() / x0.shape[0]


class ScoreDistillation:
    """The distillation loss of one training step (NFSD, SDS or VSD, per ``config.method``).

    ``lora``: VSD's eps_phi; by default a :class:`~nfsd_gs.guidance.vsd.CameraLora` on the
    prior's U-Net (tests pass a scripted one).
    """

    def __init__(self, prior: DiffusionPrior, config: GuidanceConfig, total_steps: int,
                 lora: Optional[CameraLora] = None):
        if config.method not in get_args(GuidanceMethod):
            raise ConfigError(f"config key 'guidance.method': '{config.method}' "
                              f"must be one of {', '.join(get_args(GuidanceMethod))}")
        self.prior = prior
        self.config = config
        self.total_steps = total_steps
        self.lora = None
        if config.method == "vsd":
            self.lora = lora or CameraLora(prior, config.vsd)

    @property
    def branches(self) -> List[str]:
        """Prompt branches of the one U-Net call: NFSD needs the negative prompt too."""
        return ["cond", "uncond", "negative"] if self.config.method == "nfsd" else ["cond", "uncond"]

    def prepare(self, prompt: str) -> None:
        """Check the prompt and embed the fixed prompts once (the view variants are cached
        lazily by the prior on first use)."""
        self.prior.check_prompt(prompt)
        self.prior.embed([EMPTY_PROMPT, self.config.negative_prompt, prompt])

    def branch_embeddings(self, prompts: Sequence[str]) -> Tensor:  # [K*B, L, D]
        batch = len(prompts)
        rows = {"cond": list(prompts), "uncond": [EMPTY_PROMPT] * batch,
                "negative": [self.config.negative_prompt] * batch}
        return self.prior.embed([p for branch in self.branches for p in rows[branch]])

    def predict_branches(self, z_t: Tensor, t: Tensor, prompts: Sequence[str]) -> Dict[str, Tensor]:
        """eps for every branch from ONE batched U-Net call; z_t [B, C, h, w] -> {branch: [B, C, h, w]}."""
        k = len(self.branches)
        eps = self.prior.predict_noise(z_t.repeat(k, 1, 1, 1), t.repeat(k),
                                       self.branch_embeddings(prompts))
        return dict(zip(self.branches, eps.chunk(k)))

    def direction(self, eps: Dict[str, Tensor], noise: Tensor, t: Tensor) -> Tensor:
        c = self.config
        if c.method == "nfsd":
            return nfsd_direction(eps["cond"], eps["uncond"], eps["negative"], t, c.cfg_scale,
                                  c.negative_threshold_t)
        if c.method == "vsd":
            return vsd_direction(eps["cond"], eps["uncond"], eps["lora"], c.cfg_scale)
        return sds_direction(eps["cond"], eps["uncond"], noise, c.cfg_scale)

    def loss(self, x0: Tensor, prompts: Sequence[str], step: int, timer=NO_TIMER,
             cameras: Optional[Cameras] = None) -> Tuple[Tensor, Dict[str, Tensor]]:
        """x0 [B, C, h, w] (differentiable), one prompt and (VSD) one camera per view
        -> (loss, stats).

        d loss / d x0 = w(t) (delta_D + s delta_C) / B for NFSD, w(t) (eps_cfg - noise) / B
        for SDS, w(t) (eps_cfg - eps_phi) / B for VSD, which then trains eps_phi one step on
        x0 (detached). Stats are tensors (reading them syncs the device; the trainer does so
        only when it logs).
        """
        prior, c = self.prior, self.config
        if self.lora is not None and cameras is None:
            raise ValueError("guidance.method=vsd: loss() needs the cameras of the views")
        t = sample_timesteps(c, prior.num_train_timesteps, step, self.total_steps,
                             x0.shape[0], x0.device)
        noise = torch.randn_like(x0)
        z_t = prior.add_noise(x0.detach(), noise, t)
        with timer.phase("unet"):
            eps = self.predict_branches(z_t, t, prompts)
        if self.lora is not None:
            with timer.phase("lora"):  # eps_phi, then one LoRA step on x0 (Alg. 1)
                eps["lora"], lora_loss = self.lora.step(z_t, t, x0.detach(),
                                                        prior.embed(prompts), cameras)
        with timer.phase("guidance"):
            weights = timestep_weights(c.weighting, prior.alphas_cumprod, t).view(-1, 1, 1, 1)
            grad = weights * self.direction(eps, noise, t)
            if c.grad_clip is not None:
                grad = grad.clamp(-c.grad_clip, c.grad_clip)
            stats = {"t": t.float().mean(), "grad_norm": grad.flatten(1).norm(dim=1).mean()}
            loss = distillation_loss(x0, grad)
        if self.lora is not None:
            stats["lora_loss"] = lora_loss
        return loss, stats

    def state_dict(self) -> dict:
        """What a checkpoint must hold to continue exactly: VSD's LoRA, camera MLP and
        their optimizer; nothing for NFSD and SDS."""
        return {} if self.lora is None else self.lora.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.lora is not None:
            self.lora.load_state_dict(state)
