"""``python -m nfsd_gs.shapeworld <command>``: the bundled prior's tools.

    train-prior  train the pixel-space diffusion prior (GPU: ~9 minutes)
    train-judge  train the judge: shape, colour and accent heads (GPU: ~1 minute)
    check        sample the prior for every prompt of a split (CFG 7.5), score with the judge
    samples      write a grid of training images with their captions
    words        the prompts a prior knows, read off its vocabulary (the README's list)
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import List, Optional

from ..cli import fail, positive_int
from ..errors import NfsdError
from .paths import JUDGE_DIR, SHAPES_PRIOR_DIR


def _command_line() -> str:
    return "python -m nfsd_gs.shapeworld " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _train_prior(args) -> None:
    from .prior import PriorTrainConfig, train_prior

    from .dataset import DataConfig

    config = PriorTrainConfig(steps=args.steps, minutes=args.minutes, seed=args.seed,
                              batch_size=args.batch_size, learning_rate=args.lr,
                              pool_size=args.pool_size, device=args.device,
                              log_every=args.log_every, min_snr_gamma=args.min_snr_gamma,
                              prediction_type=args.prediction, schedule=args.schedule,
                              resume=None if args.resume is None else str(args.resume),
                              init_from=None if args.init_from is None else str(args.init_from),
                              stop_at=args.stop_at, compile=args.compile,
                              warmup_steps=args.warmup_steps, weighting=args.weighting,
                              beta_schedule=args.beta_schedule,
                              data=DataConfig(caption_dropout=args.caption_dropout))
    info = train_prior(args.out, config, _command_line())
    print(f"saved prior to {args.out}: {info['steps']} steps, final loss {info['final_loss']}, "
          f"{info['images_per_s']} images/s, {info['wall_s']} s")


def _train_judge(args) -> None:
    from .judge import JudgeTrainConfig, train_judge

    config = JudgeTrainConfig(train_images=args.train_images, test_images=args.test_images,
                              epochs=args.epochs, seed=args.seed, split=args.split,
                              width=args.width, device=args.device)
    judge = train_judge(args.out, config, _command_line())
    scores = "; ".join(f"{split} " + ", ".join(f"{k.split('_')[0]} {v:.3f}" for k, v in s.items())
                       for split, s in judge.info["held_out"].items())
    print(f"saved judge to {args.out}: held-out accuracy {scores}")


def _check(args) -> None:
    from .check import check_prior, format_table, write_result

    result = check_prior(args.prior, args.judge, args.per_prompt, args.steps, args.cfg,
                         args.seed, args.device, split=args.split, batch_size=args.batch_size,
                         save_grid=args.grid, thresholding=args.thresholding,
                         sampler=args.sampler)
    print(format_table(result))
    write_result(result, args.json)


def _samples(args) -> None:
    import torch

    from ..utils.images import save_image_grid
    from .dataset import ViewPool

    generator = torch.Generator().manual_seed(args.seed)
    batch = ViewPool(args.count, generator, "cpu").sample(args.count, generator)
    save_image_grid(args.out, batch.images.permute(0, 2, 3, 1), columns=8)
    for i, caption in enumerate(batch.captions):
        print(f"{i:3d} {caption!r}")


def _words(args) -> None:
    from .vocabulary import prompt_guide, shipped_prior_splits

    print(prompt_guide(shipped_prior_splits(args.prior)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nfsd_gs.shapeworld",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train-prior", help="train the diffusion prior")
    p.add_argument("--out", type=Path, default=SHAPES_PRIOR_DIR)
    p.add_argument("--steps", type=int, default=30000)
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-clock budget of the whole command (stops training early)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--pool-size", type=int, default=60000,
                   help="clean views rendered up front (0: render every batch)")
    p.add_argument("--device", default="auto")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--prediction", default="v_prediction", choices=("v_prediction", "epsilon"),
                   help="what the U-Net predicts")
    p.add_argument("--min-snr-gamma", type=float, default=5.0,
                   help="min-SNR loss weighting (0: unweighted epsilon loss)")
    p.add_argument("--caption-dropout", type=float, default=0.13,
                   help="share of clean images' captions left empty (classifier-free guidance)")
    p.add_argument("--schedule", default="time", choices=("time", "steps"),
                   help="the learning rate decays over the further along of --steps and "
                        "--minutes (time) or over --steps alone (steps: a training spread "
                        "over several --resume calls)")
    p.add_argument("--resume", type=Path, default=None, metavar="FOLDER",
                   help="continue the training whose train_state.pt is in FOLDER")
    p.add_argument("--init-from", type=Path, default=None, metavar="FOLDER",
                   help="start from the weights of the prior saved in FOLDER (fresh optimizer)")
    p.add_argument("--weighting", default="min-snr", choices=("min-snr", "min-snr-floor"),
                   help="loss weight on the x0 error: min(SNR, gamma) or min(SNR + 1, gamma)")
    p.add_argument("--beta-schedule", default="linear", choices=("linear", "scaled_linear"),
                   help="noise schedule: DDPM's linear or Stable Diffusion's scaled_linear")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the U-Net's training step (CUDA; ~1-2 min to compile)")
    p.add_argument("--warmup-steps", type=int, default=300, help="linear learning-rate warm-up")
    p.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                   help="stop this call at STEP (the schedule still runs over --steps)")
    p.set_defaults(run=_train_prior)

    p = sub.add_parser("train-judge", help="train the shape/colour judge")
    p.add_argument("--out", type=Path, default=JUDGE_DIR)
    p.add_argument("--train-images", type=int, default=16000)
    p.add_argument("--test-images", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--split", default="both", choices=("solid", "two-tone", "both"),
                   help="the renders it learns from (and is tested on)")
    p.add_argument("--width", type=int, default=16, help="channels of the first conv layer")
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=_train_judge)

    p = sub.add_parser("check", help="sample the prior per prompt and score with the judge")
    p.add_argument("--prior", type=Path, default=SHAPES_PRIOR_DIR)
    p.add_argument("--judge", type=Path, default=JUDGE_DIR)
    p.add_argument("--split", default="solid", choices=("solid", "two-tone"))
    p.add_argument("--per-prompt", type=int, default=None,
                   help="samples per prompt (default: 192 images in all)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps")
    p.add_argument("--cfg", type=float, default=7.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=96)
    p.add_argument("--sampler", default="ddim-glide", choices=("ddim-glide", "ddim"),
                   help="DDIM with the noise re-derived from the clipped x0 (GLIDE; default) "
                        "or diffusers' plain DDIM step")
    p.add_argument("--thresholding", type=float, default=None, metavar="P",
                   help="dynamic thresholding of x0 at percentile P (Imagen; e.g. 0.995) "
                        "instead of clipping to [-1, 1]")
    p.add_argument("--json", type=Path, default=Path("outputs/prior_check.json"))
    p.add_argument("--grid", type=Path, default=Path("outputs/prior_check.png"))
    p.set_defaults(run=_check)

    p = sub.add_parser("samples", help="a grid of training images and their captions")
    p.add_argument("--out", type=Path, default=Path("outputs/shapes_samples.png"))
    p.add_argument("--count", type=positive_int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_samples)

    p = sub.add_parser("words", help="the prompts a prior knows (markdown, from its "
                                     "prior_info.json): the README's list of words")
    p.add_argument("--prior", type=Path, default=SHAPES_PRIOR_DIR)
    p.set_defaults(run=_words)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except NfsdError as err:
        return fail(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
