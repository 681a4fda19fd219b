"""Randomly initialised priors of known architectures (``prior.model=random:<name>``).

No pretrained weights can be downloaded on our machines, so tests and
benchmarks build the diffusers components from their configs, the way
diffusers' own tests use tiny dummy models:

* ``tiny``        pixel space, 32x32, epsilon prediction (CPU tests, ``configs/tiny_test.yaml``);
* ``tiny-v``      the same with v-prediction;
* ``tiny-latent`` a tiny ``AutoencoderKL`` in front (the latent path of Stable Diffusion);
* ``sd21-base``   Stable Diffusion 2.1-base's real U-Net, VAE and OpenCLIP-H text
  encoder shapes (865M + 84M + 340M parameters): same cost as the real model,
  meaningless images. Right for speed and memory, never for quality.

Random priors tokenize with :func:`~nfsd_gs.guidance.tokenizer.character_tokenizer`
(CLIP's BPE files are not available offline); the ids are as meaningless as the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from ..errors import PriorLoadError
from ..utils.device import auto_device_type
from ..utils.io import write_json
from ..utils.tokenizer import character_tokenizer


@dataclass
class PriorComponents:
    """What :class:`~nfsd_gs.guidance.prior.DiffusionPrior` is made of."""

    unet: Any  # diffusers.UNet2DConditionModel
    text_encoder: Any  # transformers.CLIPTextModel
    tokenizer: Any
    scheduler: Any  # diffusers.DDPMScheduler
    vae: Optional[Any] = None  # AutoencoderKL / AutoencoderTiny; None: pixel space


def _tiny_unet(in_channels: int, sample_size: int) -> Dict[str, Any]:
    return dict(
        sample_size=sample_size, in_channels=in_channels, out_channels=in_channels,
        block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8,
    )


_TINY_TEXT = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=77, projection_dim=32)

_TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
                 block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=32,
                 down_block_types=("DownEncoderBlock2D",) * 2,
                 up_block_types=("UpDecoderBlock2D",) * 2)

# Stable Diffusion 2.1-base (stabilityai/stable-diffusion-2-1-base), from its config files.
_SD21_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), attention_head_dim=(5, 10, 20, 20),
    cross_attention_dim=1024, use_linear_projection=True,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
)
_SD21_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, sample_size=512, layers_per_block=2,
    block_out_channels=(128, 256, 512, 512), scaling_factor=0.18215,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
)
_SD21_TEXT = dict(  # OpenCLIP ViT-H/14 text tower, penultimate layer (23 of 24)
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
    max_position_embeddings=77, projection_dim=512, hidden_act="gelu", vocab_size=49408,
)
_SD_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                     beta_schedule="scaled_linear", clip_sample=False, steps_offset=1)

#: name -> (unet config, text config, vae config or None, scheduler config)
ARCHITECTURES: Dict[str, tuple] = {
    "tiny": (_tiny_unet(3, 32), _TINY_TEXT, None,
             dict(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)),
    "tiny-v": (_tiny_unet(3, 32), _TINY_TEXT, None,
               dict(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                    prediction_type="v_prediction")),
    "tiny-latent": (_tiny_unet(4, 32), _TINY_TEXT, _TINY_VAE, _SD_SCHEDULER),
    "sd21-base": (_SD21_UNET, _SD21_TEXT, _SD21_VAE, _SD_SCHEDULER),
}


def random_components(name: str, seed: int = 0,
                      device: torch.device | str = "cpu") -> PriorComponents:
    """Components of architecture ``name`` with weights drawn from ``seed``, built directly
    on ``device`` (initialising SD-sized weights on the GPU takes a second, not a minute)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if name not in ARCHITECTURES:
        raise PriorLoadError(f"prior.model=random:{name}: unknown architecture "
                             f"(known: {', '.join(ARCHITECTURES)})")
    unet_config, text_config, vae_config, scheduler_config = ARCHITECTURES[name]
    tokenizer = character_tokenizer(text_config["max_position_embeddings"])
    text_config = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
                   "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                   **text_config}
    device = torch.device(device)
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices), device:
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**unet_config)
        text_encoder = CLIPTextModel(CLIPTextConfig(**text_config))
        vae = AutoencoderKL(**vae_config) if vae_config is not None else None
    return PriorComponents(unet, text_encoder, tokenizer, DDPMScheduler(**scheduler_config), vae)


def save_components(components: PriorComponents, folder: Path,
                    variant: Optional[str] = None) -> Path:
    """Write ``components`` in the diffusers pipeline layout (``unet/``, ``text_encoder/``,
    ``tokenizer/``, ``scheduler/``, ``vae/`` if any, ``model_index.json``); ``variant``
    names the weight files (``fp16``: ``*.fp16.safetensors``)."""
    folder = Path(folder)
    parts = {"unet": components.unet, "text_encoder": components.text_encoder,
             "tokenizer": components.tokenizer, "scheduler": components.scheduler}
    if components.vae is not None:
        parts["vae"] = components.vae
    for sub, part in parts.items():
        weighted = isinstance(part, torch.nn.Module)
        part.save_pretrained(folder / sub, **({"variant": variant} if variant and weighted else {}))
    index = {sub: [type(part).__module__.split(".")[0], type(part).__name__]
             for sub, part in parts.items()}
    write_json(folder / "model_index.json", index)
    return folder


def save_random_prior(model: str, folder: Path, seed: int = 0) -> Path:
    """``random:<arch>`` written as a local copy of a real model would be (the benchmark's
    weights on local disk): the diffusers layout with float32 files and the same weights as
    an fp16 variant (both hold fp16 values, so every load path gives the same weights),
    and, for latent priors, a random TAESD in ``folder/taesd``. Built on the GPU when there
    is one (seconds, not minutes)."""
    from diffusers import AutoencoderTiny

    if not model.startswith("random:"):
        raise PriorLoadError(f"--save-prior writes random priors: '{model}' is not random:<arch>")
    device = auto_device_type()
    components = random_components(model.split(":", 1)[1], seed, device)
    modules = [components.unet, components.text_encoder]
    if components.vae is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            taesd = AutoencoderTiny()
        modules += [components.vae, taesd]
    for dtype, variant in ((torch.float16, "fp16"), (torch.float32, None)):  # plain files last
        for module in modules:
            module.to("cpu", dtype)
        save_components(components, folder, variant)
        if components.vae is not None:
            taesd.save_pretrained(Path(folder) / "taesd",
                                  **({"variant": variant} if variant else {}))
    return Path(folder)
