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
prior, so the prior's own calls (and their CUDA graph) are unchanged. On CUDA
eps_phi's forward and the whole LoRA step are CUDA graphs captured inside
``active()``: the switches run at capture only, not per step (issue 26).

The LoRA step, against the two references (read in thu-ml/prolificdreamer's
``main.py``/``nerf/utils.py`` and threestudio's ``stable_diffusion_vsd_guidance.py``
and ``configs/prolificdreamer.yaml``):

=====================  ========================  =======================  ===================
                       ProlificDreamer (code)    threestudio              here (guidance.vsd)
=====================  ========================  =======================  ===================
views rendered a step  1                         1 (``batch_size: 1``)    camera.batch_size
LoRA rows a step       1 (``unet_bs``), K=1      views x 1 timestep       ``views`` (0: all) x
                       update a step             (``lora_n_timestamp_     ``timesteps``
                                                 samples``)
LoRA t                 U[0, 1000)                U[0, 1000)               U[t_min, t_max] T
lr (AdamW)             1e-4, linear warm-up      1e-4 (the ``guidance``   ``lr`` (1e-3)
                       over 500 steps            group), no warm-up
rank                   4 (LoRAAttnProcessor)     4 (LoRAAttnProcessor)    ``lora_rank`` (4)
camera                 c2w through a 2-layer     c2w, TimestepEmbedding   the same
                       MLP into the time emb.    (16 -> 1280)
camera dropout         0.1 (``uncond_p``)        0.1 (``lora_cfg_         ``camera_dropout`` (0)
                                                 training``)
starts                 step 0 (``q_iter``)       step 0                   ``start`` (0)
LoRA's U-Net           SD 2.1 (v-prediction)     = the prior in that      the prior's own U-Net
                                                 config (SD 2.1-base)
=====================  ========================  =======================  ===================

Both references render and train on ONE view a step, over 10,000-25,000 steps; our
runs are 400 (bundled prior) to 1,200 (Stable Diffusion) steps of 4-8 views, so the
LoRA sees as many renders in far fewer updates. What we keep and why: rank 4 and the
camera path as both; every view and a timestep each by default, so the default runs
stay what they were (``views=1`` is the references' batch and the cheapest lever, see
the README's measurements); lr 1e-3 until the evaluation of issue 26 says otherwise
(the README gives the evidence that a LoRA fitting the renders too closely is what
speckles, and the variants that test the fixes).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from typing import ContextManager, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..cameras import Cameras
from ..config import VsdConfig
from ..errors import ConfigError, NfsdError
from .base import DistillationMethod
from .cfg import classifier_free_guidance
from .graph import GraphedCall, StaticGraph
from .nfsd import negative_term, negative_views
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


def lora_rows(x0: Tensor, embeddings: Tensor, labels: Tensor, views: int,
              timesteps: int) -> Tuple[Tensor, Tensor, Tensor]:
    """The LoRA's training rows of one step: the first ``views`` views (0: all), each
    ``timesteps`` times. x0 [B, C, h, w], embeddings [B, L, D], labels [B, 16] ->
    the same with R = k * timesteps rows (k = min(views, B); row r is view r mod k).
    One draw of every view keeps x0's memory layout, so its noise is drawn as before."""
    k = len(x0) if views == 0 else min(views, len(x0))
    x0, embeddings, labels = x0[:k], embeddings[:k], labels[:k]
    if timesteps == 1:
        return x0, embeddings, labels
    return (x0.repeat(timesteps, 1, 1, 1), embeddings.repeat(timesteps, 1, 1),
            labels.repeat(timesteps, 1))


def graphs_available(device: torch.device) -> bool:
    """Whether eps_phi and the LoRA step can be CUDA graphs on ``device``."""
    return torch.device(device).type == "cuda"


def all_finite(tensors: Sequence[Tensor]) -> Tensor:  # 0-dim bool, no host sync
    """Whether every element is finite, from the total 2-norm (one multi-tensor kernel; a
    finite gradient whose norm overflows float32, ~1e38, counts as not finite)."""
    return torch.isfinite(torch.nn.utils.get_total_norm(tensors))


class CameraLora:
    """eps_phi(z_t; y, c): the prior's U-Net + a LoRA + a camera MLP, and their own AdamW.

    On CUDA with ``cuda_graph`` (the default) eps_phi's forward and the LoRA's whole
    training step (forward, backward, finite check, AdamW) are CUDA graphs, captured on
    first use with the adapters on and the camera MLP attached and replayed without either
    switch: the graphs read the LoRA weights in place, where the fused AdamW writes them.
    A step with a non-finite gradient is skipped on the device (the fused AdamW's
    ``found_inf``, as ``torch.amp.GradScaler`` drives it), not by a host sync."""

    def __init__(self, prior: DiffusionPrior, config: VsdConfig):
        self.prior = prior
        self.config = config
        lora_parameters = add_lora(prior.unet, config.lora_rank, prior.name)
        from peft.tuners.tuners_utils import BaseTunerLayer

        self._adapted_layers = [m for m in prior.unet.modules() if isinstance(m, BaseTunerLayer)]
        self._switch_adapters(False)  # the frozen prior, until active()
        self.camera_embedding = camera_mlp(prior.unet, prior.device)
        self.parameters = lora_parameters + list(self.camera_embedding.parameters())
        self.half = config.autocast and prior.dtype in (torch.float16, torch.bfloat16)
        for layer in self._adapted_layers:  # under autocast the input stays half precision
            layer.cast_input_dtype_enabled = not self.half
        self.graphed = config.cuda_graph and graphs_available(prior.device)
        # fused + capturable: an AdamW that runs inside a CUDA graph and skips on found_inf
        self._optimizer_mode = ({"fused": True, "capturable": True, "foreach": None}
                                if self.graphed else {})
        self.optimizer = torch.optim.AdamW(self.parameters, lr=config.lr, **self._optimizer_mode)
        self._predict_graphs: Optional[GraphedCall] = None
        self._train_graphs: Dict[tuple, StaticGraph] = {}
        if self.graphed:
            self._found_inf = torch.zeros((), device=prior.device)
            self.optimizer.found_inf = self._found_inf  # read by the fused step (see class doc)
            self._pool = torch.cuda.graph_pool_handle()  # eps_phi's and the step's graphs
            self._predict_graphs = GraphedCall(self._forward, context=self.active,
                                               pool=self._pool)

    def _switch_adapters(self, on: bool) -> None:
        """peft's own switch, on the adapted layers only: diffusers' ``unet.enable_adapters()``
        walks every module of the U-Net (about 2,000 in SD 2.1), 30 ms per on/off pair on
        our CPU against 7 ms for the 128 adapted layers. With CUDA graphs it runs only
        while a graph is captured."""
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

    def _precision(self) -> ContextManager:
        """Autocast in the prior's half precision (``autocast``); its weight-cast cache off,
        as CUDA-graph capture requires."""
        if not self.half:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.prior.device).type, dtype=self.prior.dtype,
                              cache_enabled=False)

    def _forward(self, z_t: Tensor, t: Tensor, embeddings: Tensor,
                 labels: Tensor) -> Tensor:  # [N, C, h, w], the model's parametrization
        """The adapted U-Net (call inside :meth:`active`); labels [N, 16]: camera features."""
        with self._precision():
            return self.prior.unet(z_t.to(self.prior.dtype), t, encoder_hidden_states=embeddings,
                                   class_labels=labels).sample

    def predict_noise(self, z_t: Tensor, t: Tensor, embeddings: Tensor,
                      cameras: Cameras) -> Tensor:
        """eps_phi(z_t; y, c): z_t [B, C, h, w], t [B], embeddings [B, L, D] -> [B, C, h, w]."""
        labels = camera_features(cameras)
        if self.graphed:
            return self._predict(z_t, t, embeddings, labels)
        with self.active():
            return self._predict(z_t, t, embeddings, labels)

    @torch.no_grad()
    def _predict(self, z_t: Tensor, t: Tensor, embeddings: Tensor,
                 labels: Tensor) -> Tensor:  # [B, C, h, w] float32
        call = self._forward if self._predict_graphs is None else self._predict_graphs
        return self.prior.to_epsilon(call(z_t, t, embeddings, labels).float(), z_t, t)

    def step(self, z_t: Tensor, t: Tensor, x0: Tensor, embeddings: Tensor,
             cameras: Cameras) -> Tuple[Tensor, Tensor]:
        """Alg. 1, lines 5 and 7: eps_phi(z_t; y, c) of the current LoRA (for the 3D
        gradient), then one LoRA step on the renders x0 (detached).
        -> (eps_phi [B, C, h, w], the step's mean squared error)."""
        labels = camera_features(cameras)
        if self.graphed:  # no switch: the graphs were captured with the adapters on
            return (self._predict(z_t, t, embeddings, labels),
                    self._train(x0, embeddings, labels))
        with self.active():  # one switch of the U-Net for both
            return (self._predict(z_t, t, embeddings, labels),
                    self._train(x0, embeddings, labels))

    def _train(self, x0: Tensor, embeddings: Tensor, labels: Tensor) -> Tensor:
        """One AdamW step of the ordinary diffusion loss on the rows of :func:`lora_rows`,
        each with its own t ~ U[t_min, t_max] x T and noise; skipped if a gradient is not
        finite. Returns the mean squared error (0-dim)."""
        c, prior = self.config, self.prior
        x0, embeddings, labels = lora_rows(x0, embeddings, labels, c.views, c.timesteps)
        high = min(int(c.t_max * prior.num_train_timesteps), prior.num_train_timesteps - 1)
        t = torch.randint(int(c.t_min * prior.num_train_timesteps), high + 1,
                          (x0.shape[0],)).to(x0.device)
        noise = draw_noise(x0)
        if c.camera_dropout > 0 and float(torch.rand(())) < c.camera_dropout:
            labels = torch.zeros_like(labels)  # ProlificDreamer's unconditional camera
        z_t = prior.add_noise(x0, noise, t)
        target = prior.diffusion_target(x0, noise, t)
        if not self.graphed:
            return self._train_step(z_t, t, embeddings, labels, target)
        key = tuple((tuple(x.shape), x.dtype) for x in (z_t, t, embeddings, labels, target))
        if key not in self._train_graphs:
            self._train_graphs[key] = StaticGraph(
                self._train_step, (z_t, t, embeddings, labels, target), grad=True,
                warmup=functools.partial(self._train_step, skip=True), context=self.active,
                pool=self._pool)
        return self._train_graphs[key](z_t, t, embeddings, labels, target)

    def _train_step(self, z_t: Tensor, t: Tensor, embeddings: Tensor, labels: Tensor,
                    target: Tensor, skip: bool = False) -> Tensor:
        """Forward, backward and AdamW step on the noised rows z_t [R, C, h, w] (inside
        :meth:`active`, eagerly or under capture). ``skip``: leave every weight and moment
        as it is (a graph's warm-up). The gradients stay in ``.grad`` until the next step."""
        self.optimizer.zero_grad(set_to_none=True)
        squared_error = (self._forward(z_t, t, embeddings, labels).float() - target).pow(2)
        # Summed per row, not averaged over pixels: the same Adam step (Adam ignores the
        # loss's scale), with gradients that stay above fp16's underflow in the U-Net.
        squared_error.flatten(1).sum(1).mean().backward()
        finite = all_finite([p.grad for p in self.parameters if p.grad is not None])
        if self.graphed:
            self._found_inf.copy_(torch.logical_not(finite) | skip)
            with warnings.catch_warnings():  # a warm-up's step runs uncaptured, on purpose
                warnings.filterwarnings("ignore", message=".*capturable=True.*")
                self.optimizer.step()
        elif not skip and bool(finite):  # the eager path's one host sync
            self.optimizer.step()
        return squared_error.detach().mean()

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> Dict[str, Dict]:
        from peft import get_peft_model_state_dict

        return {"lora": get_peft_model_state_dict(self.prior.unet, adapter_name=ADAPTER_NAME),
                "camera_embedding": self.camera_embedding.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Dict[str, Dict]) -> None:
        """Weights are copied in place (the graphs keep reading them); the optimizer keeps
        its own implementation (a checkpoint of the graphed, fused AdamW resumes eagerly and
        back) and its step graphs are captured again."""
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
        mode = {"fused": None, "capturable": False, "foreach": None, **self._optimizer_mode}
        for group in self.optimizer.param_groups:
            group.update(mode)
        for moments in self.optimizer.state.values():  # device steps only when capturable
            moments["step"] = moments["step"].to(
                self.prior.device if self.graphed else "cpu", torch.float32)
        self._train_graphs.clear()


class Vsd(DistillationMethod):
    """VSD: two branches of the frozen prior (the prompt, and the empty or the negative
    prompt) and eps_phi, trained one step per training step (Alg. 1) from
    ``guidance.vsd.start`` on. ``lora``: eps_phi; by default a :class:`CameraLora` on the
    prior's U-Net (tests pass a scripted one)."""

    one_per_prior = True  # the LoRA is on the shared prior's U-Net (add_lora replaces it)

    def __init__(self, prior: DiffusionPrior, config, lora: Optional[CameraLora] = None):
        super().__init__(prior, config)
        self.lora = lora or CameraLora(prior, config.vsd)
        #: CFG's unconditional branch: the empty prompt, or the negative one (``vsd.negative``)
        self.unconditional = "negative" if config.vsd.negative else "uncond"
        self.branches = ("cond", self.unconditional)
        if config.vsd.domain_scale:  # NFSD's negative term: the negative prompt, where read
            self.branches += ("negative",)

    def views_needed(self, branch: str, t: Tensor) -> Optional[Tensor]:  # t [B] on the host
        if branch == "negative" and self.config.vsd.domain_scale:
            return negative_views(self.config, t)
        return None

    def observe(self, z_t: Tensor, t: Tensor, x0: Tensor, prompts: Sequence[str],
                cameras: Optional[Cameras],
                progress: float = 0.0) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
        """eps_phi at (z_t, t), then one LoRA step on x0 (Alg. 1, lines 5 and 7); nothing
        before ``guidance.vsd.start`` (``progress``: the fraction of the run done), where
        :meth:`direction` takes the untrained eps_phi, the prior's conditional prediction."""
        if cameras is None:
            raise ValueError("guidance.method=vsd: the step needs the cameras of the views")
        if progress < self.config.vsd.start:
            return {}, {}
        eps_phi, lora_loss = self.lora.step(z_t, t, x0.detach(), self.prior.embed(prompts), cameras)
        return {"lora": eps_phi}, {"lora_loss": lora_loss}

    def direction(self, eps: Mapping[str, Tensor], noise: Tensor, t: Tensor) -> Tensor:
        """eps_cfg - eps_phi; before the LoRA's start eps_phi is the untrained LoRA (B = 0,
        camera MLP output 0): exactly the prior's eps(z_t; y), so the direction is
        (s - 1)(eps_cond - eps_uncond). With ``vsd.negative`` the negative prompt's
        prediction stands for eps_uncond. With ``vsd.domain_scale`` lambda, NFSD's
        lambda (eps_uncond - eps_neg) is added on the views with t >= the threshold."""
        c = self.config
        eps_phi = eps["lora"] if "lora" in eps else eps["cond"]
        direction = vsd_direction(eps["cond"], eps[self.unconditional], eps_phi, c.cfg_scale)
        if c.vsd.domain_scale:
            direction = direction + negative_term(eps["uncond"], eps["negative"], t,
                                                  c.negative_threshold_t, c.vsd.domain_scale)
        return direction

    def state_dict(self) -> Dict[str, Dict]:
        """The LoRA, the camera MLP and their optimizer."""
        return self.lora.state_dict()

    def load_state_dict(self, state: Dict[str, Dict]) -> None:
        self.lora.load_state_dict(state)
