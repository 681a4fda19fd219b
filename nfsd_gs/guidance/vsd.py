"""Variational Score Distillation (Wang et al., ProlificDreamer, NeurIPS 2023, Alg. 1).

VSD moves the 3D parameters along

    grad_x = w(t) (eps_cfg(z_t; y) - eps_phi(z_t; y, c))

with eps_cfg the frozen prior under classifier-free guidance (``cfg.py``) and
eps_phi a LoRA (Hu et al. 2022) of the same U-Net, conditioned on the camera c,
trained at every step on the current renders with the ordinary diffusion loss
(Alg. 1, lines 5-7): eps_phi models the distribution of the renders themselves,
and its prediction takes the place of SDS's random noise. The NFSD paper
(Katzir et al. 2024, Sec. 5) reads eps_phi as an estimate of the noise term
delta_N, which NFSD drops instead of learning.

The camera enters as in ProlificDreamer: its camera-to-world matrix (16
numbers) through a two-layer MLP added to the timestep embedding, which is
diffusers' class-embedding path (``class_labels``; the ``TimestepEmbedding``
that ``class_embed_type="projection"`` builds). The MLP's output layer starts
at zero and the LoRA's B matrices start at zero (peft's default), so eps_phi
starts as the pretrained model, as Alg. 1 initializes it. eps_phi gets the same
prompt as the frozen conditional branch (view suffix included; threestudio
gives its LoRA the prompt without the suffix, the camera carrying the view).

The LoRA lives on the prior's own U-Net, through diffusers' adapter support
(peft): the frozen weights are shared, not copied (an SD-sized U-Net is 1.7 GB
in fp16). Adapters are enabled, and the camera MLP attached, only inside
:meth:`CameraLora.active`; outside it the U-Net computes exactly the frozen
prior, so the prior's own calls (and their CUDA graph) are unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..cameras import Cameras
from ..config import VsdConfig
from ..errors import ConfigError, NfsdError
from .base import DistillationMethod
from .cfg import classifier_free_guidance
from .prior import DiffusionPrior
from .schedule import draw_noise

ADAPTER_NAME = "vsd"
#: The attention projections ProlificDreamer adapts (diffusers' LoRA attention processors).
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
#: A flattened 4x4 camera-to-world matrix.
CAMERA_FEATURES = 16


def vsd_direction(eps_cond: Tensor, eps_uncond: Tensor, eps_lora: Tensor,
                  cfg_scale: float) -> Tensor:
    """eps_cfg - eps_phi for each row (shapes [B, C, h, w]): Alg. 1, line 5."""
    return classifier_free_guidance(eps_cond, eps_uncond, cfg_scale) - eps_lora


def camera_features(cameras: Cameras) -> Tensor:  # [B, 16]
    """ProlificDreamer's camera condition: the flattened camera-to-world matrix (the rigid
    inverse of ``world_to_camera``: no solver, no device sync)."""
    camera_to_world = torch.zeros_like(cameras.world_to_camera)  # [B, 4, 4]
    camera_to_world[:, :3, :3] = cameras.world_to_camera[:, :3, :3].transpose(1, 2)
    camera_to_world[:, :3, 3] = cameras.positions
    camera_to_world[:, 3, 3] = 1
    return camera_to_world.flatten(1)


def add_lora(unet: torch.nn.Module, rank: int, prior_name: str) -> List[torch.nn.Parameter]:
    """Put a fresh rank-``rank`` LoRA named ``vsd`` on the attention projections of ``unet``
    (replacing one an earlier run left on a shared prior); returns its parameters (float32)."""
    try:
        from peft import LoraConfig
        from peft.tuners.tuners_utils import cast_adapter_dtype
    except ImportError:
        raise ConfigError("guidance.method=vsd needs the peft library: pip install peft") from None
    if not hasattr(unet, "add_adapter") or getattr(unet, "class_embedding", None) is not None:
        raise ConfigError(f"guidance.method=vsd: the U-Net of prior '{prior_name}' "
                          f"({type(unet).__name__}) cannot take a camera-conditioned LoRA "
                          "(it needs a diffusers UNet2DConditionModel without class embeddings)")
    if ADAPTER_NAME in (getattr(unet, "peft_config", None) or {}):
        unet.delete_adapters(ADAPTER_NAME)
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=list(LORA_TARGETS))
    try:
        unet.add_adapter(config, adapter_name=ADAPTER_NAME)
    except ValueError as err:  # peft: "Target modules ... not found in the base model"
        raise ConfigError(f"guidance.method=vsd: the U-Net of prior '{prior_name}' has no "
                          f"attention projections ({', '.join(LORA_TARGETS)}) to put a LoRA on "
                          f"({str(err).splitlines()[0][:120]})") from None
    cast_adapter_dtype(unet, ADAPTER_NAME)  # fp16 adapters cannot be trained with AdamW
    return [p for name, p in unet.named_parameters() if f".{ADAPTER_NAME}." in name]


def camera_mlp(unet: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """c [B, 16] -> [B, time_embed_dim]: Linear, SiLU, Linear, the output layer zeroed."""
    from diffusers.models.embeddings import TimestepEmbedding

    mlp = TimestepEmbedding(CAMERA_FEATURES, unet.time_embedding.linear_2.out_features)
    torch.nn.init.zeros_(mlp.linear_2.weight)
    torch.nn.init.zeros_(mlp.linear_2.bias)
    return mlp.to(device)


class CameraLora:
    """eps_phi(z_t; y, c): the prior's U-Net + a LoRA + a camera MLP, and their own AdamW."""

    def __init__(self, prior: DiffusionPrior, config: VsdConfig):
        self.prior = prior
        self.config = config
        lora_parameters = add_lora(prior.unet, config.lora_rank, prior.name)
        from peft.tuners.tuners_utils import BaseTunerLayer

        self._adapted_layers = [m for m in prior.unet.modules() if isinstance(m, BaseTunerLayer)]
        self._switch_adapters(False)  # the frozen prior, until active()
        self.camera_embedding = camera_mlp(prior.unet, prior.device)
        self.parameters = lora_parameters + list(self.camera_embedding.parameters())
        self.optimizer = torch.optim.AdamW(self.parameters, lr=config.lr)

    def _switch_adapters(self, on: bool) -> None:
        """peft's own switch, on the adapted layers only: diffusers' ``unet.enable_adapters()``
        walks every module of the U-Net (about 2,000 in SD 2.1), 30 ms per on/off pair on
        our CPU against 7 ms for the 128 adapted layers."""
        for layer in self._adapted_layers:
            layer.enable_adapters(on)

    @contextlib.contextmanager
    def active(self) -> Iterator[torch.nn.Module]:
        """The U-Net as eps_phi (adapters on, camera MLP attached); the frozen prior after."""
        unet = self.prior.unet
        self._switch_adapters(True)
        unet.class_embedding = self.camera_embedding
        try:
            yield unet
        finally:
            unet.class_embedding = None
            self._switch_adapters(False)

    def _output(self, unet: torch.nn.Module, z_t: Tensor, t: Tensor, embeddings: Tensor,
                cameras: Cameras) -> Tensor:  # [B, C, h, w] float32, the model's parametrization
        return unet(z_t.to(self.prior.dtype), t, encoder_hidden_states=embeddings,
                    class_labels=camera_features(cameras)).sample.float()

    @torch.no_grad()
    def _predict(self, unet: torch.nn.Module, z_t: Tensor, t: Tensor, embeddings: Tensor,
                 cameras: Cameras) -> Tensor:  # [B, C, h, w] float32
        return self.prior.to_epsilon(self._output(unet, z_t, t, embeddings, cameras), z_t, t)

    def predict_noise(self, z_t: Tensor, t: Tensor, embeddings: Tensor,
                      cameras: Cameras) -> Tensor:
        """eps_phi(z_t; y, c): z_t [B, C, h, w], t [B], embeddings [B, L, D] -> [B, C, h, w]."""
        with self.active() as unet:
            return self._predict(unet, z_t, t, embeddings, cameras)

    def step(self, z_t: Tensor, t: Tensor, x0: Tensor, embeddings: Tensor,
             cameras: Cameras) -> Tuple[Tensor, Tensor]:
        """Alg. 1, lines 5 and 7, in one switch of the U-Net: eps_phi(z_t; y, c) of the
        current LoRA (for the 3D gradient), then one LoRA step on the renders x0 (detached).
        -> (eps_phi [B, C, h, w], the step's mean squared error)."""
        with self.active() as unet:
            return (self._predict(unet, z_t, t, embeddings, cameras),
                    self._train(unet, x0, embeddings, cameras))

    def _train(self, unet: torch.nn.Module, x0: Tensor, embeddings: Tensor,
               cameras: Cameras) -> Tensor:
        """One AdamW step of the ordinary diffusion loss on x0 [B, C, h, w], with the LoRA's
        own t ~ U[t_min, t_max] x T per view and its own noise; skipped if a gradient is
        not finite. Returns the mean squared error."""
        c, prior = self.config, self.prior
        high = min(int(c.t_max * prior.num_train_timesteps), prior.num_train_timesteps - 1)
        t = torch.randint(int(c.t_min * prior.num_train_timesteps), high + 1,
                          (x0.shape[0],)).to(x0.device)
        noise = draw_noise(x0)
        z_t = prior.add_noise(x0, noise, t)
        output = self._output(unet, z_t, t, embeddings, cameras)
        squared_error = (output - prior.diffusion_target(x0, noise, t)).pow(2)
        # Summed per view, not averaged over pixels: the same Adam step (Adam ignores the
        # loss's scale), with gradients that stay above fp16's underflow in the U-Net.
        # Called inside active(): peft freezes the adapters it disables.
        squared_error.flatten(1).sum(1).mean().backward()
        grads = [p.grad for p in self.parameters if p.grad is not None]
        if grads and bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return squared_error.detach().mean()

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> Dict[str, Dict]:
        from peft import get_peft_model_state_dict

        return {"lora": get_peft_model_state_dict(self.prior.unet, adapter_name=ADAPTER_NAME),
                "camera_embedding": self.camera_embedding.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Dict[str, Dict]) -> None:
        from peft import set_peft_model_state_dict

        if not {"lora", "camera_embedding", "optimizer"} <= set(state):
            raise NfsdError("the checkpoint holds no VSD LoRA state to resume guidance.method=vsd")
        result = set_peft_model_state_dict(self.prior.unet, state["lora"],
                                           adapter_name=ADAPTER_NAME)
        if result.unexpected_keys:
            raise NfsdError(f"the checkpoint's VSD LoRA does not fit this prior "
                            f"(e.g. '{result.unexpected_keys[0]}')")
        self.camera_embedding.load_state_dict(state["camera_embedding"])
        self.optimizer.load_state_dict(state["optimizer"])


class Vsd(DistillationMethod):
    """VSD: two branches of the frozen prior (prompt, empty) and eps_phi, trained one step per
    training step (Alg. 1). ``lora``: eps_phi; by default a :class:`CameraLora` on the prior's
    U-Net (tests pass a scripted one)."""

    def __init__(self, prior: DiffusionPrior, config, lora: Optional[CameraLora] = None):
        super().__init__(prior, config)
        self.lora = lora or CameraLora(prior, config.vsd)

    def observe(self, z_t: Tensor, t: Tensor, x0: Tensor, prompts: Sequence[str],
                cameras: Optional[Cameras]) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
        """eps_phi at (z_t, t), then one LoRA step on x0 (Alg. 1, lines 5 and 7)."""
        if cameras is None:
            raise ValueError("guidance.method=vsd: the step needs the cameras of the views")
        eps_phi, lora_loss = self.lora.step(z_t, t, x0.detach(), self.prior.embed(prompts), cameras)
        return {"lora": eps_phi}, {"lora_loss": lora_loss}

    def direction(self, eps: Mapping[str, Tensor], noise: Tensor, t: Tensor) -> Tensor:
        return vsd_direction(eps["cond"], eps["uncond"], eps["lora"], self.config.cfg_scale)

    def state_dict(self) -> Dict[str, Dict]:
        """The LoRA, the camera MLP and their optimizer."""
        return self.lora.state_dict()

    def load_state_dict(self, state: Dict[str, Dict]) -> None:
        self.lora.load_state_dict(state)
