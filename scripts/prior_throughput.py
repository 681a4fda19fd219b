"""Images/s of the bundled prior's training step at several batch sizes (one GPU).

    python scripts/prior_throughput.py [--batch-sizes 256 512 1024] [--steps 15]

Times the real ``diffusion_loss`` + backward + AdamW step on random images (bf16 autocast,
channels-last, as ``train_prior`` runs it) after a warm-up; prints one row per batch size.
``--dry-run``: a tiny architecture at 16x16 on the given device (the CPU in CI), to check
the script itself.
"""

from __future__ import annotations

import argparse
import time

import torch

from nfsd_gs.shapeworld.prior import (PriorArchitecture, build_scheduler, build_text_encoder,
                                      build_tokenizer, build_unet, diffusion_loss)
from nfsd_gs.utils.timing import synchronize

#: --dry-run's architecture (the tests' tiny prior).
TINY = PriorArchitecture(sample_size=16, block_out_channels=(8, 8, 16, 16), norm_num_groups=4,
                         text_hidden_size=16, text_layers=1, text_heads=2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dry-run", action="store_true", help="a tiny architecture, 16x16")
    parser.add_argument("--compile", action="store_true", help="torch.compile the U-Net")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    arch = TINY if args.dry_run else PriorArchitecture()
    tokenizer = build_tokenizer(arch.max_length)
    text_encoder = build_text_encoder(tokenizer, arch).to(device).train()
    unet = build_unet(arch).to(device).train().to(memory_format=torch.channels_last)
    train_unet = torch.compile(unet) if args.compile else unet
    alphas = build_scheduler().alphas_cumprod.to(device)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    generator = torch.Generator(device).manual_seed(0)
    print("| batch | ms/step | images/s | peak GiB |\n|---:|---:|---:|---:|")
    for batch in args.batch_sizes:
        images = torch.rand(batch, 3, arch.sample_size, arch.sample_size, device=device).contiguous(
            memory_format=torch.channels_last)
        ids = torch.randint(3, len(tokenizer), (batch, arch.max_length), device=device)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        for i in range(args.steps + 3):
            if i == 3:
                synchronize(device)
                start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = diffusion_loss(train_unet, text_encoder, alphas, images, ids, generator, 5.0,
                                      "v_prediction")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
        synchronize(device)
        ms = 1000 * (time.perf_counter() - start) / args.steps
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        print(f"| {batch} | {ms:.1f} | {1000 * batch / ms:.0f} | {peak:.1f} |", flush=True)


if __name__ == "__main__":
    main()
