"""One training step: the data path of ``docs/ARCHITECTURE.md``, in three parts.

    render_and_encode(run, step)   cameras.sample -> representation.render -> prior.encode
                                   -> Rendered(views, out, x0 [B, C, h, w])
    run.guidance.loss(x0, ...)     d loss / d x0 = w(t) (delta_D + s delta_C) / B (NFSD)
    apply_gradients(run, ...)      regularize: the representation's own terms join the loss;
                                   backward: densify pre-backward, backward, finite flags;
                                   one host sync (first_nonfinite);
                                   update: optimizer steps, densify post-backward

:func:`training_step` is their composition for one asset. The engine that holds several
assets (:mod:`nfsd_gs.train.batched`) calls the first part and ``regularize``,
``backward`` and ``update`` per asset, each with its own run (optimizers, densifier, RNG streams), and between them makes
ONE U-Net call for all of them with the guidance's parts (``perturb``, ``unet_inputs``,
``split_predictions``, ``loss_from_predictions``; see :mod:`nfsd_gs.guidance`) and ONE
host sync for all their finite checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from ..background import sample_backgrounds
from ..cameras import Cameras, view_prompts
from ..representations import RenderOutput
from ..utils.timing import NO_TIMER
from .run import Run


@dataclass
class Views:
    """The random views of one step."""

    cameras: Cameras  # B cameras on the run's device
    background: Tensor  # [B, 3]
    prompts: List[str]  # one per view (view-dependent suffixes: ", side view"...)


@dataclass
class Rendered:
    """One asset's step up to the prior's input."""

    views: Views
    out: RenderOutput  # rgb [B, H, W, 3], alpha, depth, info (densification's 2D gradients)
    x0: Tensor  # [B, C, h, w], differentiable: the prior's encoding of out.rgb


def sample_views(run: Run, step: int) -> Views:
    """B cameras, their backgrounds and prompts of ``step``, from the run's own generator."""
    c = run.config
    cameras = run.sampler.sample(generator=run.generator).to(run.device)
    background = sample_backgrounds(c.background, len(cameras), run.generator,
                                    progress=step / max(c.steps, 1)).to(run.device)
    prompts = (view_prompts(c.prompt, cameras, c.camera) if c.guidance.view_dependent_prompt
               else [c.prompt] * len(cameras))
    return Views(cameras, background, prompts)


def render_and_encode(run: Run, step: int, timer=NO_TIMER) -> Rendered:
    """Views of ``step``, the representation's schedules, its render and the prior's x0."""
    views = sample_views(run, step)
    resolution = run.config.camera.resolution
    run.model.update(step, run.config.steps, run.optimizers)
    with timer.phase("render"):
        out = run.model.render(views.cameras, resolution, resolution, views.background)
    with timer.phase("encode"):
        x0 = run.prior.encode(out.rgb)  # [B, C, h, w]
    return Rendered(views, out, x0)


def regularize(run: Run, step: int, loss: Tensor,
               stats: Dict[str, Tensor]) -> Tuple[Tensor, Dict[str, Tensor]]:
    """The representation's own regularization terms (``Representation.regularization``,
    none by default) join the distillation ``loss``, per asset; each is logged as
    ``reg_<name>``."""
    terms = run.model.regularization(step, run.config.steps)  # {name: weighted 0-d tensor}
    loss = sum(terms.values(), loss)  # the distillation loss itself when there are none
    return loss, {**stats, **{f"reg_{name}": term.detach() for name, term in terms.items()}}


def backward(run: Run, step: int, rendered: Rendered, loss: Tensor, timer=NO_TIMER) -> Tensor:
    """Densification's pre-backward hook and ``loss.backward()``; returns the finiteness of
    each parameter group's gradient and of the loss (:func:`finite_flags`), still on the
    device: an engine of several assets reads all of theirs in one host sync."""
    if run.densifier is not None:
        run.densifier.pre_backward(step, rendered.out.info)
    with timer.phase("backward"):
        loss.backward()
    return finite_flags(loss, run.optimizers)


def update(run: Run, step: int, rendered: Rendered, loss: Tensor, stats: Dict[str, Tensor],
           bad_group: Optional[str], timer=NO_TIMER) -> Dict[str, Tensor]:
    """The optimizers and the densifier after :func:`backward` (gsplat's order: refine after
    the optimizer step; the 2D gradients stay on ``rendered.out.info``), unless a gradient
    or the loss is not finite (``bad_group``: the first such group, see
    :func:`first_nonfinite`): then the step changes nothing and its stats carry
    ``nonfinite`` = 1 and ``bad_group``."""
    if bad_group is not None:
        for optimizer in run.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        return {"loss": loss.detach(), **stats, "nonfinite": torch.ones(()),
                "bad_group": bad_group}
    with timer.phase("optimizer"):
        for optimizer in run.optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    if run.densifier is not None:
        with timer.phase("densify"):
            stats.update(run.densifier.post_backward(step, rendered.out.info))
    return {"loss": loss.detach(), **stats}


def apply_gradients(run: Run, step: int, rendered: Rendered, loss: Tensor,
                    stats: Dict[str, Tensor], timer=NO_TIMER) -> Dict[str, Tensor]:
    """:func:`regularize`, :func:`backward`, one host sync to read its finiteness, then
    :func:`update`."""
    loss, stats = regularize(run, step, loss, stats)
    flags = backward(run, step, rendered, loss, timer)
    return update(run, step, rendered, loss, stats, first_nonfinite(flags, run.optimizers), timer)


def training_step(run: Run, step: int, timer=NO_TIMER) -> Dict[str, Tensor]:
    """One NFSD (or SDS, VSD...) step on a batch of random views; returns tensor stats."""
    rendered = render_and_encode(run, step, timer)
    loss, stats = run.guidance.loss(rendered.x0, rendered.views.prompts, step, timer,
                                    cameras=rendered.views.cameras)
    return apply_gradients(run, step, rendered, loss, stats, timer)


def finite_flags(loss: Tensor, optimizers: Dict[str, torch.optim.Optimizer]) -> Tensor:
    """[G + 1] bool on the device: whether each parameter group's gradient (those that have
    one, in ``optimizers``' order) and then the loss are finite. No host sync."""
    checks = []
    for optimizer in optimizers.values():
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]
                 if p.grad is not None]
        if grads:
            checks.append(torch.stack([torch.isfinite(g).all() for g in grads]).all())
    checks.append(torch.isfinite(loss).all())
    return torch.stack(checks)


def first_nonfinite(flags: Tensor, optimizers: Dict[str, torch.optim.Optimizer]) -> Optional[str]:
    """Name of the first parameter group whose gradient is not finite ("loss" when only
    the loss is), or None when everything is finite; ``flags`` of :func:`finite_flags`, on
    the host or the device (one host sync)."""
    finite = flags.cpu()
    if bool(finite.all()):
        return None
    names = [name for name, optimizer in optimizers.items()
             if any(p.grad is not None for group in optimizer.param_groups
                    for p in group["params"])] + ["loss"]
    return names[int((~finite).nonzero()[0])]
