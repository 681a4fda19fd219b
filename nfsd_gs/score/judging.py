"""The one judge: a model in memory, scored against the bundled world.

:meth:`WorldJudge.score` renders V views of any representation (its protocol's
``render``) on the evaluation orbit (azimuths 0, 360/V, ... at the config's evaluation
elevation, radius and fov) over the fixed background, and scores them:

* the judge network's verdicts (fraction of views named as the prompt's shape / colour /
  accent) and appearance (saturation, sharpness, coverage, speckle): ``metrics.py``;
* against the ground-truth object aligned to ours in scale and yaw (one alignment grid,
  :data:`~nfsd_gs.score.ground_truth.ALIGN_YAWS` x ``ALIGN_SCALES``): silhouette IoU and
  CIELAB colour error: ``ground_truth.py``.

The end of a run (``nfsd_gs.train``'s verdict), the catalogue (``nfsd_gs.batch``), the
evaluation (``nfsd_gs.eval``) and ``nfsd_gs.score`` all call it, so their numbers agree
for the same model (``tests/test_score.py``).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..background import fixed_backgrounds
from ..config import Config, config_to_dict, load_config
from ..errors import NfsdError
from ..representations import Representation, load_result
from ..shapeworld import ObjectSpec, object_prompt, parse_prompt
from .ground_truth import (ALIGN_SCALES, ALIGN_YAWS, SilhouetteBank, compare_to_truth,
                           eval_cameras, render_ground_truth, render_model)
from .metrics import score_views

#: The prior whose world the judge knows: runs of any other prior are not judged.
JUDGED_PRIOR = "bundled:shapes"


def judges(config: Config) -> bool:
    """Whether the judge can score a run of ``config`` (a run of the bundled world's prior)."""
    return config.prior.model == JUDGED_PRIOR


def expected_verdicts(spec: ObjectSpec) -> Dict[str, str]:
    """What the judge should say per head: ``{"shape": "cone", "colour": "red",
    "accent": "none"}`` (``"yellow top"`` on the two-tone split)."""
    return {"shape": spec.shape, "colour": spec.colour, "accent": spec.accent_label}


def _looks_like(spec: ObjectSpec, seen: Mapping[str, str]) -> str:
    """What one view looks like in the heads of ``spec``'s split: ``"red cone"``; on the
    two-tone split also its accent, ``"brown cube with a yellow top"`` (or none seen)."""
    name = f"{seen['colour']} {seen['shape']}"
    if spec.accent is not None and seen.get("accent", "none") != "none":
        name += f" with a {seen['accent']}"  # "<accent> <pattern>"
    return name


def verdict_line(spec: ObjectSpec, verdicts: Mapping[str, Sequence[str]]) -> str:
    """The judge's verdict against what was asked, in one line a user reads once.

    ``verdicts``: the judge's class per head and view (``Judged.scores["verdicts"]``). Only
    the heads of the prompt's split count: shape and colour, and the accent on the
    two-tone split (on a solid object the accent head names no part of the prompt). Every
    count is out of the same V views::

        8/8 views look like the "red cone" asked for
        5/8 views look like the "red cone" asked for (shape right in 8/8, colour in 5/8);
            the other 3 look like "orange cone" (3)
    """
    heads = ("shape", "colour") + (("accent",) if spec.accent is not None else ())
    expected = expected_verdicts(spec)
    views = len(verdicts["shape"])
    asked = _looks_like(spec, expected)
    seen = [_looks_like(spec, {h: verdicts[h][i] for h in heads}) for i in range(views)]
    right = seen.count(asked)
    line = f'{right}/{views} views look like the "{asked}" asked for'
    if right == views:
        return line
    per_head = [f"{head}{' right' if k == 0 else ''} in "
                f"{sum(v == expected[head] for v in verdicts[head])}/{views}"
                for k, head in enumerate(heads)]
    others = Counter(name for name in seen if name != asked).most_common()
    who = ("they look" if right == 0 else "the other looks" if views - right == 1
           else f"the other {views - right} look")
    return (f"{line} ({', '.join(per_head)}); {who} like "
            + ", ".join(f'"{name}" ({count})' for name, count in others))


def load_judge(folder: Optional[str | Path] = None, device: torch.device | str = "cpu"):
    """The judge network in ``folder`` (default: the shipped one)."""
    from ..shapeworld.judge import Judge

    return Judge.load(folder, device) if folder else Judge.load(device=device)


@dataclass(frozen=True)
class JudgeSettings:
    """How every model is judged: views and their size, and the alignment grid."""

    views: int = 8
    resolution: int = 64  # pixels, square: the judge's own size
    align_yaws: int = ALIGN_YAWS  # a multiple of ``views``
    align_scales: Tuple[float, float, int] = ALIGN_SCALES  # (low, high, count), geometric


@dataclass
class Judged:
    """What the judge made of one model."""

    #: ``shape_acc``, ``colour_acc``, ``accent_acc``, ``both_acc``, ``all_acc``, ``judged``
    #: (names per view), ``saturation``, ``sharpness``, ``coverage``, ``speckle``; and, against
    #: the ground truth, ``iou`` and ``colour_de``.
    scores: Dict
    #: ``{"scale", "yaw_deg"}`` of the aligned ground truth (None without it).
    alignment: Optional[Dict[str, float]]
    rgb: Tensor  # [V, R, R, 3] our views, CPU
    truth_rgb: Optional[Tensor]  # [V, R, R, 3] the aligned ground truth's views, CPU

    def numbers(self) -> Dict[str, float]:
        """The numeric scores and the alignment (a manifest row's ``score``)."""
        values = {**self.scores, **(self.alignment or {})}
        return {k: v for k, v in values.items() if isinstance(v, (int, float))}


class WorldJudge:
    """The judge network plus, per object and evaluation orbit, the ground truth's scores
    and its silhouette bank (rendered once, reused by every model of that prompt).

    ``judge``: a ``nfsd_gs.shapeworld.Judge`` (default: the shipped one, loaded on first use);
    ``device``: where models, cameras and the ground truth are rendered (the model's)."""

    def __init__(self, judge=None, settings: JudgeSettings = JudgeSettings(),
                 device: torch.device | str = "cpu"):
        self._judge = judge
        self.settings = settings
        self.device = torch.device(device)
        self._truths: Dict[str, Tuple[Dict, Tensor]] = {}
        self._banks: Dict[str, SilhouetteBank] = {}

    @property
    def judge(self):
        if self._judge is None:
            self._judge = load_judge(device=self.device)
        return self._judge

    def score(self, model: Representation, config: Config,
              against_truth: bool = True) -> Judged:
        """Judge the finished ``model`` (``model.finish()``: every schedule at its end) of a
        run of ``config``, whose prompt must name an object of the world (PromptError)."""
        spec = parse_prompt(config.prompt)
        s = self.settings
        model.finish()
        cameras = eval_cameras(config, s.views).to(self.device)
        background = fixed_backgrounds(config.background, len(cameras)).to(self.device)
        rgb, mask = render_model(model, cameras, background, s.resolution)
        scores = score_views(self.judge, rgb, mask, expected_verdicts(spec))
        if not against_truth:
            return Judged(scores, None, rgb, None)
        against, truth_rgb = compare_to_truth(spec, rgb, mask, cameras, background,
                                              self.bank(spec, config))
        alignment = {"scale": against.pop("scale"), "yaw_deg": against.pop("yaw_deg")}
        return Judged({**scores, **against}, alignment, rgb, truth_rgb)

    def truth(self, config: Config) -> Tuple[Dict, Tensor]:
        """The ground truth's own scores and rgb [V, R, R, 3] at unit scale (what the judge
        and the appearance metrics give the real object)."""
        spec = parse_prompt(config.prompt)
        key = self._key(spec, config)
        if key not in self._truths:
            s = self.settings
            cameras = eval_cameras(config, s.views)
            background = fixed_backgrounds(config.background, len(cameras))
            rgb, mask = render_ground_truth(spec, cameras, background, s.resolution)
            self._truths[key] = (score_views(self.judge, rgb, mask, expected_verdicts(spec)), rgb)
        return self._truths[key]

    def bank(self, spec: ObjectSpec, config: Config) -> SilhouetteBank:
        """The silhouettes the alignment searches, for ``spec`` on ``config``'s orbit."""
        key = self._key(spec, config)
        if key not in self._banks:
            s = self.settings
            self._banks[key] = SilhouetteBank(spec, config.camera, s.views, s.resolution,
                                              s.align_yaws, s.align_scales, self.device)
        return self._banks[key]

    @staticmethod
    def _key(spec: ObjectSpec, config: Config) -> str:
        return json.dumps([object_prompt(spec), config_to_dict(config)["camera"],
                           list(config.background.color)])


def score_run(run_dir: Path, settings: JudgeSettings = JudgeSettings(),
              against_truth: bool = True, device: torch.device | str = "cpu") -> Dict:
    """The one judge on a finished run folder: its ``config.yaml`` and its model, read back
    through the representation protocol (``representations.load_result``)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise NfsdError(f"'{run_dir}' is not a run folder (no config.yaml)")
    config = load_config(run_dir / "config.yaml")
    parse_prompt(config.prompt)  # a prompt outside the world: its one line, before loading
    model = load_result(config, run_dir, torch.device(device))
    judged = WorldJudge(settings=settings, device=device).score(model, config, against_truth)
    return {"run": str(run_dir), "prompt": config.prompt, **judged.scores,
            **(judged.alignment or {})}
