"""Score distillation from a frozen diffusion prior: NFSD (default), SDS and VSD.

:class:`ScoreDistillation` turns a batch of encoded renders x0 into a loss whose gradient
on x0 is the distillation direction. The methods are strategies behind one small
interface (``base.py``), chosen by ``guidance.method`` through :data:`METHODS`:
``nfsd.py``, ``sds.py``, ``vsd.py`` (with VSD's trained LoRA). The shared math lives in
``cfg.py`` (classifier-free guidance, written once) and ``schedule.py`` (t and w(t)), the
model in ``prior.py``.

One step, split so that a caller holding several assets can make ONE U-Net call for all
of them (each asset keeps its own ``ScoreDistillation``)::

    noised = guidance.perturb(x0, step)                   # t [B], noise, z_t
    z, t, embeddings = guidance.unet_inputs(noised.z_t, noised.t, prompts)  # K*B rows
    eps = guidance.split_predictions(prior.predict_noise(z, t, embeddings))
    loss, stats = guidance.loss_from_predictions(x0, noised, eps, prompts, cameras=cameras)

:meth:`ScoreDistillation.loss` is exactly that for one asset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, get_args

import torch
from torch import Tensor

from ..cameras import Cameras
from ..config import GuidanceConfig, GuidanceMethod as GuidanceMethodName
from ..errors import ConfigError
from ..utils.timing import NO_TIMER
from .base import DistillationMethod, GuidanceMethod
from .nfsd import Nfsd
from .prior import DiffusionPrior
from .schedule import sample_timesteps, timestep_weights
from .sds import Sds
from .vsd import Vsd

__all__ = ["METHODS", "DiffusionPrior", "DistillationMethod", "GuidanceMethod", "Noised",
           "ScoreDistillation", "build_method", "distillation_loss"]

EMPTY_PROMPT = ""

#: ``guidance.method`` -> a builder ``(prior, guidance config) -> GuidanceMethod``.
METHODS: Dict[str, Callable[[DiffusionPrior, GuidanceConfig], GuidanceMethod]] = {
    "nfsd": Nfsd,
    "sds": Sds,
    "vsd": Vsd,
}
assert set(METHODS) == set(get_args(GuidanceMethodName)), "one builder per guidance method"


def build_method(prior: DiffusionPrior, config: GuidanceConfig) -> GuidanceMethod:
    """The method named by ``config.method``."""
    if config.method not in METHODS:
        raise ConfigError(f"config key 'guidance.method': '{config.method}' "
                          f"must be one of {', '.join(METHODS)}")
    return METHODS[config.method](prior, config)


def distillation_loss(x0: Tensor, grad: Tensor) -> Tensor:
    """0.5 ||x0 - sg(x0 - grad)||^2 / B: its gradient on x0 is exactly grad / B.

    x0, grad [B, C, h, w]; the standard way to inject a score-distillation
    gradient through autograd (DreamFusion's reparametrization).
    """
    target = (x0 - grad).detach()
    return 0.5 * (x0 - target).pow(2).sum() / x0.shape[0]


@dataclass
class Noised:
    """One step's noising of x0: z_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise (DDPM eq. 4)."""

    t: Tensor  # [B] long
    noise: Tensor  # [B, C, h, w]
    z_t: Tensor  # [B, C, h, w], detached from x0
    step: int  # the training step it belongs to


class ScoreDistillation:
    """The distillation loss of one training step, for the method of ``config.method``
    (``method``: an already built one, e.g. VSD with a scripted LoRA in tests)."""

    def __init__(self, prior: DiffusionPrior, config: GuidanceConfig, total_steps: int,
                 method: Optional[GuidanceMethod] = None):
        self.prior = prior
        self.config = config
        self.total_steps = total_steps
        self.method = method if method is not None else build_method(prior, config)

    @property
    def branches(self) -> List[str]:
        """Prompt branches of the one U-Net call: NFSD needs the negative prompt too."""
        return list(self.method.branches)

    def prepare(self, prompt: str) -> None:
        """Check the prompt and embed the fixed prompts once (the view variants are cached
        lazily by the prior on first use)."""
        self.prior.check_prompt(prompt)
        self.prior.embed([EMPTY_PROMPT, self.config.negative_prompt, prompt])

    # ------------------------------------------------------------------ the step, in parts

    def perturb(self, x0: Tensor, step: int) -> Noised:
        """Timesteps of ``step`` (``schedule.py``) and fresh noise for x0 [B, C, h, w]."""
        t = sample_timesteps(self.config, self.prior.num_train_timesteps, step, self.total_steps,
                             x0.shape[0], x0.device)
        noise = torch.randn_like(x0)
        return Noised(t, noise, self.prior.add_noise(x0.detach(), noise, t), step)

    def branch_embeddings(self, prompts: Sequence[str]) -> Tensor:  # [K*B, L, D]
        batch = len(prompts)
        rows = {"cond": list(prompts), "uncond": [EMPTY_PROMPT] * batch,
                "negative": [self.config.negative_prompt] * batch}
        return self.prior.embed([p for branch in self.branches for p in rows[branch]])

    def unet_inputs(self, z_t: Tensor, t: Tensor,
                    prompts: Sequence[str]) -> Tuple[Tensor, Tensor, Tensor]:
        """The rows this asset adds to the U-Net call for z_t [B, C, h, w] at t [B]:
        z [K*B, C, h, w], t [K*B] and embeddings [K*B, L, D], branch-major (K branches)."""
        k = len(self.branches)
        return z_t.repeat(k, 1, 1, 1), t.repeat(k), self.branch_embeddings(prompts)

    def split_predictions(self, eps: Tensor) -> Dict[str, Tensor]:
        """eps [K*B, C, h, w] of :meth:`unet_inputs`' rows -> {branch: [B, C, h, w]}."""
        return dict(zip(self.branches, eps.chunk(len(self.branches))))

    def predict_branches(self, z_t: Tensor, t: Tensor, prompts: Sequence[str]) -> Dict[str, Tensor]:
        """eps for every branch from ONE batched U-Net call; z_t [B, C, h, w] -> {branch: [B, C, h, w]}."""
        return self.split_predictions(self.prior.predict_noise(*self.unet_inputs(z_t, t, prompts)))

    def direction(self, eps: Dict[str, Tensor], noise: Tensor, t: Tensor) -> Tensor:
        """The method's direction before w(t) ([B, C, h, w])."""
        return self.method.direction(eps, noise, t)

    def loss_from_predictions(self, x0: Tensor, noised: Noised, eps: Dict[str, Tensor],
                              prompts: Sequence[str], timer=NO_TIMER,
                              cameras: Optional[Cameras] = None) -> Tuple[Tensor, Dict[str, Tensor]]:
        """The loss and stats of the predictions ``eps`` (per branch) at ``noised``: the
        method's own model first (VSD), then w(t) * direction, clipped, as a loss on x0."""
        with timer.phase("lora"):  # VSD: eps_phi, then one LoRA step on x0 (Alg. 1)
            extra, extra_stats = self.method.observe(noised.z_t, noised.t, x0, prompts, cameras,
                                                     progress=noised.step / max(self.total_steps, 1))
        eps = {**eps, **extra}
        with timer.phase("guidance"):
            weights = timestep_weights(self.config.weighting, self.prior.alphas_cumprod,
                                       noised.t).view(-1, 1, 1, 1)
            grad = weights * self.direction(eps, noised.noise, noised.t)
            if self.config.grad_clip is not None:
                grad = grad.clamp(-self.config.grad_clip, self.config.grad_clip)
            stats = {"t": noised.t.float().mean(), "grad_norm": grad.flatten(1).norm(dim=1).mean()}
            loss = distillation_loss(x0, grad)
        stats.update(extra_stats)
        return loss, stats

    def loss(self, x0: Tensor, prompts: Sequence[str], step: int, timer=NO_TIMER,
             cameras: Optional[Cameras] = None) -> Tuple[Tensor, Dict[str, Tensor]]:
        """x0 [B, C, h, w] (differentiable), one prompt and (VSD) one camera per view
        -> (loss, stats).

        d loss / d x0 = w(t) (delta_D + s delta_C) / B for NFSD, w(t) (eps_cfg - noise) / B
        for SDS, w(t) (eps_cfg - eps_phi) / B for VSD, which then trains eps_phi one step on
        x0 (detached). Stats are tensors (reading them syncs the device; the trainer does so
        only when it logs).
        """
        noised = self.perturb(x0, step)
        with timer.phase("unet"):
            eps = self.predict_branches(noised.z_t, noised.t, prompts)
        return self.loss_from_predictions(x0, noised, eps, prompts, timer, cameras)

    def state_dict(self) -> dict:
        """What a checkpoint must hold to continue exactly: VSD's LoRA, camera MLP and
        their optimizer; nothing for NFSD and SDS."""
        return self.method.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.method.load_state_dict(state)
