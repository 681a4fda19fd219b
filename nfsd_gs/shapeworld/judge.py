"""The judge: a small CNN that names the shape and the colour of an object in a 64x64 image.

Trained only on clean renders of the procedural world (its own seed, never
the prior's weights or samples), with the trainer's cameras and backgrounds,
so it can score what a text-to-3D run produced against what the prompt asked for.
Shipped as ``nfsd_gs/assets/judge/judge.safetensors`` + ``judge.json``.

    judge = Judge.load()
    shapes, colours, shape_probs, colour_probs = judge.classify(images)  # [B, H, W, 3] in [0, 1]
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, PriorLoadError
from . import JUDGE_DIR
from .dataset import DataConfig, render_views
from .degrade import blur
from .world import COLOUR_NAMES, SHAPES

IMAGE_SIZE = 64


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class JudgeNet(nn.Module):
    """Six 3x3 conv layers (64 -> 8 pixels), mean+max pooling, a shape and a colour head."""

    def __init__(self, width: int = 16, shapes: int = len(SHAPES), colours: int = len(COLOUR_NAMES)):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(3, w, 1), _block(w, 2 * w, 2), _block(2 * w, 2 * w, 1),
            _block(2 * w, 4 * w, 2), _block(4 * w, 4 * w, 1), _block(4 * w, 8 * w, 2))
        self.shape_head = nn.Linear(16 * w, shapes)
        self.colour_head = nn.Linear(16 * w, colours)

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        """images [B, 3, 64, 64] in [0, 1] -> shape logits [B, S], colour logits [B, C]."""
        f = self.features(images * 2 - 1)  # [B, 8w, 8, 8]
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)  # [B, 16w]
        return self.shape_head(pooled), self.colour_head(pooled)


class Judge:
    """A trained :class:`JudgeNet` with its class names."""

    def __init__(self, net: JudgeNet, shapes: List[str], colours: List[str],
                 info: Optional[Dict] = None, device: torch.device | str = "cpu"):
        self.net = net.to(device).eval()
        self.shapes, self.colours = list(shapes), list(colours)
        self.info = info or {}
        self.device = torch.device(device)

    @classmethod
    def load(cls, folder: Path | str = JUDGE_DIR, device: torch.device | str = "cpu") -> "Judge":
        """Load ``judge.safetensors`` + ``judge.json`` from ``folder`` (default: the shipped judge)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        weights, meta = folder / "judge.safetensors", folder / "judge.json"
        if not weights.is_file() or not meta.is_file():
            raise PriorLoadError(f"no judge in '{folder}' (expected judge.safetensors and "
                                 f"judge.json; train one with `python -m nfsd_gs.shapeworld "
                                 f"train-judge`)")
        info = json.loads(meta.read_text())
        net = JudgeNet(info["width"], len(info["shapes"]), len(info["colours"]))
        net.load_state_dict(load_file(str(weights)))
        return cls(net, info["shapes"], info["colours"], info, device)

    def save(self, folder: Path | str) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(folder / "judge.safetensors"))
        (folder / "judge.json").write_text(json.dumps(self.info, indent=2) + "\n")

    @torch.no_grad()
    def logits(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        """images [B, H, W, 3] in [0, 1] (any square size, resized to 64) -> logits."""
        if images.dim() != 4 or images.shape[-1] != 3:
            raise ConfigError(f"judge: images must be [B, H, W, 3], got {tuple(images.shape)}")
        x = images.permute(0, 3, 1, 2).float().to(self.device).clamp(0, 1)
        if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                              align_corners=False, antialias=x.shape[-1] > IMAGE_SIZE)
        return self.net(x)

    def classify(self, images: Tensor) -> Tuple[List[str], List[str], Tensor, Tensor]:
        """Names and probabilities: (shapes [B], colours [B], shape_probs [B, S], colour_probs [B, C])."""
        shape_logits, colour_logits = self.logits(images)
        shape_probs, colour_probs = shape_logits.softmax(-1).cpu(), colour_logits.softmax(-1).cpu()
        return ([self.shapes[i] for i in shape_probs.argmax(-1).tolist()],
                [self.colours[i] for i in colour_probs.argmax(-1).tolist()],
                shape_probs, colour_probs)


# ---------------------------------------------------------------------------- training


@dataclass
class JudgeTrainConfig:
    train_images: int = 16000
    test_images: int = 2000
    epochs: int = 6
    batch_size: int = 128
    learning_rate: float = 3e-3
    width: int = 16
    seed: int = 1234
    test_seed: int = 98765
    device: str = "cpu"


def _augment(images: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror and mild blur [B, 3, H, W]: Gaussian-splat renders are softer than ray casts."""
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    images = torch.where(flip.view(-1, 1, 1, 1).to(images.device), images.flip(-1), images)
    soft = (torch.rand(images.shape[0], generator=generator) < 0.3).nonzero()[:, 0]
    if len(soft):
        sigma = 0.3 + 0.9 * torch.rand(len(soft), generator=generator)
        images = images.index_copy(0, soft.to(images.device), blur(images[soft], sigma))
    return images


def _render_dataset(count: int, seed: int, device) -> Tuple[Tensor, Tensor, Tensor]:
    """Clean views [N, 3, 64, 64] with shape [N] and colour [N] labels."""
    generator = torch.Generator().manual_seed(seed)
    images, shapes, colours = [], [], []
    for start in range(0, count, 512):
        views = render_views(min(512, count - start), generator, device, DataConfig())
        images.append(views.images)
        shapes.append(views.scenes.shape)
        colours.append(views.scenes.colour)
    return torch.cat(images), torch.cat(shapes), torch.cat(colours)


@torch.no_grad()
def accuracy(judge: Judge, images: Tensor, shapes: Tensor, colours: Tensor) -> Dict[str, float]:
    """Shape and colour accuracy of ``judge`` on labelled images [N, 3, H, W]."""
    shape_hits = colour_hits = 0
    for start in range(0, images.shape[0], 512):
        chunk = images[start:start + 512].permute(0, 2, 3, 1)
        s_logits, c_logits = judge.logits(chunk)
        shape_hits += (s_logits.argmax(-1).cpu() == shapes[start:start + 512]).sum().item()
        colour_hits += (c_logits.argmax(-1).cpu() == colours[start:start + 512]).sum().item()
    n = images.shape[0]
    return {"shape_accuracy": shape_hits / n, "colour_accuracy": colour_hits / n}


def train_judge(out: Path | str, config: JudgeTrainConfig, command: str = "") -> Judge:
    """Train on ``train_images`` fresh renders (seed ``seed``), test on ``test_seed``, save."""
    start = time.perf_counter()
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    images, shapes, colours = _render_dataset(config.train_images, config.seed, device)
    test = _render_dataset(config.test_images, config.test_seed, device)
    print(f"rendered {config.train_images + config.test_images} views in "
          f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
    net = JudgeNet(config.width).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    steps = config.epochs * ((config.train_images + config.batch_size - 1) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.learning_rate, total_steps=steps)
    generator = torch.Generator().manual_seed(config.seed + 1)
    judge = Judge(net, list(SHAPES), list(COLOUR_NAMES), device=device)
    for epoch in range(config.epochs):
        net.train()
        order = torch.randperm(config.train_images, generator=generator)
        total = 0.0
        for start_i in range(0, config.train_images, config.batch_size):
            index = order[start_i:start_i + config.batch_size]
            x = _augment(images[index.to(device)], generator)
            s_logits, c_logits = net(x)
            loss = (F.cross_entropy(s_logits, shapes[index].to(device))
                    + F.cross_entropy(c_logits, colours[index].to(device)))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
        net.eval()
        scores = accuracy(judge, *test)
        print(f"epoch {epoch + 1}/{config.epochs} loss {total / config.train_images:.4f} "
              f"held-out shape {scores['shape_accuracy']:.3f} colour "
              f"{scores['colour_accuracy']:.3f} ({time.perf_counter() - start:.0f} s)",
              file=sys.stderr)
    judge.net.to("cpu")
    judge.device = torch.device("cpu")
    judge.info = {"shapes": list(SHAPES), "colours": list(COLOUR_NAMES), "width": config.width,
                  "image_size": IMAGE_SIZE, "held_out": scores, "training": asdict(config),
                  "command": command, "wall_s": round(time.perf_counter() - start, 1)}
    judge.save(out)
    return judge
