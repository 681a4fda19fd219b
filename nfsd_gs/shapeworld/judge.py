"""The judge: a small CNN that names the shape, the body colour and the accent of an
object in a 64x64 image.

Trained only on clean renders of the procedural world (both splits; its own seed,
never the prior's weights or samples), with the trainer's cameras and backgrounds,
so it can score what a text-to-3D run produced against what the prompt asked for.
Shipped as ``nfsd_gs/assets/judge/judge.safetensors`` + ``judge.json``.

    judge = Judge.load()
    judge.verdict(images)  # [B, H, W, 3] in [0, 1] -> {"shape": [...], "colour": [...],
                           #                            "accent": ["none", "yellow top", ...]}
    judge.probabilities(images)  # {head: [B, classes]}
    shapes, colours, shape_probs, colour_probs = judge.classify(images)  # the first two heads

Heads (:data:`HEADS`): ``shape`` (SHAPES), ``colour`` (the body colour, COLOUR_NAMES) and
``accent`` (:data:`~nfsd_gs.shapeworld.vocabulary.ACCENT_LABELS`: ``"none"`` for solid
objects, else ``"<accent colour> <pattern>"``). A judge saved before the accent head
existed loads with the first two heads only.
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
from .paths import JUDGE_DIR
from .dataset import DataConfig, render_views
from .degrade import blur
from .vocabulary import ACCENT_LABELS, SPLITS
from .world import COLOUR_NAMES, PATTERNS, SHAPES, Scenes

IMAGE_SIZE = 64
HEADS = ("shape", "colour", "accent")


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class JudgeNet(nn.Module):
    """Six 3x3 conv layers (64 -> 8 pixels), mean+max pooling, one linear head per attribute
    (shape, colour and, if ``accents`` > 0, accent)."""

    def __init__(self, width: int = 16, shapes: int = len(SHAPES), colours: int = len(COLOUR_NAMES),
                 accents: int = len(ACCENT_LABELS)):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(3, w, 1), _block(w, 2 * w, 2), _block(2 * w, 2 * w, 1),
            _block(2 * w, 4 * w, 2), _block(4 * w, 4 * w, 1), _block(4 * w, 8 * w, 2))
        self.shape_head = nn.Linear(16 * w, shapes)
        self.colour_head = nn.Linear(16 * w, colours)
        self.accent_head = nn.Linear(16 * w, accents) if accents > 0 else None

    def forward(self, images: Tensor) -> Dict[str, Tensor]:
        """images [B, 3, 64, 64] in [0, 1] -> {head: logits [B, classes]}."""
        f = self.features(images * 2 - 1)  # [B, 8w, 8, 8]
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)  # [B, 16w]
        logits = {"shape": self.shape_head(pooled), "colour": self.colour_head(pooled)}
        if self.accent_head is not None:
            logits["accent"] = self.accent_head(pooled)
        return logits


class Judge:
    """A trained :class:`JudgeNet` with its class names per head."""

    def __init__(self, net: JudgeNet, shapes: List[str], colours: List[str],
                 info: Optional[Dict] = None, device: torch.device | str = "cpu",
                 accents: Optional[List[str]] = None):
        self.net = net.to(device).eval()
        if accents is None and net.accent_head is not None:
            accents = list(ACCENT_LABELS)
        #: Class names of every head the judge has, in :data:`HEADS` order.
        self.classes: Dict[str, List[str]] = {"shape": list(shapes), "colour": list(colours)}
        if accents is not None:
            self.classes["accent"] = list(accents)
        self.info = info or {}
        self.device = torch.device(device)

    @property
    def heads(self) -> Tuple[str, ...]:
        return tuple(self.classes)

    @property
    def shapes(self) -> List[str]:
        return self.classes["shape"]

    @property
    def colours(self) -> List[str]:
        return self.classes["colour"]

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
        accents = info.get("accents")  # absent: a judge from before the accent head
        net = JudgeNet(info["width"], len(info["shapes"]), len(info["colours"]),
                       len(accents or ()))
        net.load_state_dict(load_file(str(weights)))
        return cls(net, info["shapes"], info["colours"], info, device, accents)

    def save(self, folder: Path | str) -> None:
        """``judge.safetensors`` + ``judge.json`` (info with the class names of every head)."""
        from safetensors.torch import save

        from ..utils.io import write_json, write_with

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        data = save(state)
        write_with(folder / "judge.safetensors", lambda handle: handle.write(data))
        names = {"shapes": self.shapes, "colours": self.colours}
        if "accent" in self.classes:
            names["accents"] = self.classes["accent"]
        write_json(folder / "judge.json", {**self.info, **names})

    @torch.no_grad()
    def logits(self, images: Tensor) -> Dict[str, Tensor]:
        """images [B, H, W, 3] in [0, 1] (any square size, resized to 64) -> {head: logits}."""
        if images.dim() != 4 or images.shape[-1] != 3:
            raise ConfigError(f"judge: images must be [B, H, W, 3], got {tuple(images.shape)}")
        x = images.permute(0, 3, 1, 2).float().to(self.device).clamp(0, 1)
        if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                              align_corners=False, antialias=x.shape[-1] > IMAGE_SIZE)
        return self.net(x)

    def probabilities(self, images: Tensor) -> Dict[str, Tensor]:
        """{head: class probabilities [B, classes] (CPU)} for images [B, H, W, 3] in [0, 1]."""
        return {head: logits.softmax(-1).cpu() for head, logits in self.logits(images).items()}

    def verdict(self, images: Tensor) -> Dict[str, List[str]]:
        """{head: the class name per image [B]}: ``{"shape": ["cone", ...], "colour":
        ["red", ...], "accent": ["none", ...]}`` (no "accent" for a judge without that head)."""
        return {head: [self.classes[head][i] for i in probs.argmax(-1).tolist()]
                for head, probs in self.probabilities(images).items()}

    def classify(self, images: Tensor) -> Tuple[List[str], List[str], Tensor, Tensor]:
        """Names and probabilities: (shapes [B], colours [B], shape_probs [B, S], colour_probs [B, C])."""
        probs = self.probabilities(images)
        return ([self.shapes[i] for i in probs["shape"].argmax(-1).tolist()],
                [self.colours[i] for i in probs["colour"].argmax(-1).tolist()],
                probs["shape"], probs["colour"])


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
    #: Which split(s) the renders come from (``both``: half solid, half two-tone).
    split: str = "both"
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


def scene_labels(scenes: Scenes) -> Dict[str, Tensor]:
    """The judge's target class per head [B] (accent: 0 = none, else 1 + accent * P + pattern)."""
    accent = torch.where(scenes.accent >= 0, 1 + scenes.accent * len(PATTERNS) + scenes.pattern, 0)
    return {"shape": scenes.shape, "colour": scenes.colour, "accent": accent}


def _render_dataset(count: int, seed: int, device, split: str) -> Tuple[Tensor, Dict[str, Tensor]]:
    """Clean views [N, 3, 64, 64] and their labels per head [N]."""
    generator = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for start in range(0, count, 512):
        views = render_views(min(512, count - start), generator, device, DataConfig(split=split))
        images.append(views.images)
        labels.append(scene_labels(views.scenes))
    return torch.cat(images), {h: torch.cat([l[h] for l in labels]) for h in labels[0]}


@torch.no_grad()
def accuracy(judge: Judge, images: Tensor, labels: Dict[str, Tensor]) -> Dict[str, float]:
    """Accuracy of every head of ``judge`` on labelled images [N, 3, H, W]:
    ``{"shape_accuracy": ..., "colour_accuracy": ..., "accent_accuracy": ...}``."""
    hits = {head: 0 for head in judge.heads}
    for start in range(0, images.shape[0], 512):
        logits = judge.logits(images[start:start + 512].permute(0, 2, 3, 1))
        for head in judge.heads:
            got = logits[head].argmax(-1).cpu()
            hits[head] += (got == labels[head][start:start + 512]).sum().item()
    return {f"{head}_accuracy": hits[head] / images.shape[0] for head in judge.heads}


def train_judge(out: Path | str, config: JudgeTrainConfig, command: str = "") -> Judge:
    """Train on ``train_images`` fresh clean renders (seed ``seed``), test on ``test_seed``
    (held-out accuracy per head and per split), save to ``out``."""
    start = time.perf_counter()
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    images, labels = _render_dataset(config.train_images, config.seed, device, config.split)
    splits = SPLITS if config.split == "both" else (config.split,)
    tests = {split: _render_dataset(max(config.test_images // len(splits), 1),
                                    config.test_seed + k, device, split)
             for k, split in enumerate(splits)}
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
            logits = net(_augment(images[index.to(device)], generator))
            loss = sum(F.cross_entropy(logits[h], labels[h][index].to(device)) for h in logits)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
        net.eval()
        scores = {split: accuracy(judge, *test) for split, test in tests.items()}
        print(f"epoch {epoch + 1}/{config.epochs} loss {total / config.train_images:.4f} held-out "
              + "; ".join(f"{split}: " + ", ".join(f"{k.split('_')[0]} {v:.3f}"
                                                    for k, v in split_scores.items())
                          for split, split_scores in scores.items())
              + f" ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    judge.net.to("cpu")
    judge.device = torch.device("cpu")
    judge.info = {"width": config.width, "image_size": IMAGE_SIZE, "held_out": scores,
                  "training": asdict(config), "command": command,
                  "wall_s": round(time.perf_counter() - start, 1)}
    judge.save(out)
    return judge
