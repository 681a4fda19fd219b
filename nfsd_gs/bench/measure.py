"""The benchmark's measurements (the command line is ``python -m nfsd_gs.bench``).

It builds the prior with random weights of Stable Diffusion 2.1-base's shapes
(``random:sd21-base``), runs the real step (:func:`nfsd_gs.train.step.training_step`)
at 512x512 for each combination of views, guidance method and Gaussian count, and
measures: ms per step split by phase (render, encode, U-Net, guidance, backward,
optimizer, densify), peak memory, and the floor measured on the same inputs:

* the U-Net call replayed as a CUDA graph (batch = views x branches),
* the encoder forward + backward,
* the rasterizer forward + backward,

with the ratio step / floor.  One whole asset, and the levers of issue 25, are measured
in :mod:`nfsd_gs.bench.asset`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

from ..config import Config, GuidanceConfig, resolve_config
from ..errors import ConfigError
from ..guidance import ScoreDistillation
from ..guidance.graph import GraphedCall
from ..guidance.prior import DiffusionPrior
from ..guidance.schedule import probability_below
from ..train.run import Run, build_run
from ..train.step import training_step
from ..utils.device import resolve_device
from ..utils.timing import PhaseTimer, synchronize

#: The prompt of a benchmark run on Stable Diffusion shapes (random weights: any prompt costs
#: the same).
PROMPT = "a DSLR photo of a corgi"
#: The prompt on the bundled prior, which knows only its world's objects.
BUNDLED_PROMPT = "a red cone"


@dataclass(frozen=True)
class BenchSettings:
    """What every measured run shares (the command line's flags)."""

    config: str = "nfsd_gs"
    prior: str = "random:sd21-base"
    encoder: str = "vae"
    eager: bool = False  # no CUDA graph for the U-Net
    steps: int = 20  # timed steps per combination
    warmup: int = 5
    timed_steps: int = 5  # steps of the phase split
    floor_repeats: int = 10
    asset_steps: int = 1200
    gaussians: int = 100_000  # --levers: the fixed Gaussian count of the sampled steps
    sample_steps: int = 30  # --levers: steps sampled over the schedule per lever
    prompt: Optional[str] = None  # None: the prior's own (:meth:`prompt_of_prior`)
    overrides: Tuple[str, ...] = ()

    @property
    def prompt_of_prior(self) -> str:
        """The asked prompt, else one the prior knows: a world object for the bundled prior,
        the benchmark's classic prompt for Stable Diffusion shapes."""
        if self.prompt is not None:
            return self.prompt
        return BUNDLED_PROMPT if self.prior.startswith("bundled:") else PROMPT


PHASES = ("render", "encode", "unet", "guidance", "lora", "backward", "optimizer", "densify")


def time_ms(function: Callable[[], object], device: torch.device, repeats: int,
            warmup: int = 3) -> float:
    """Mean wall milliseconds of ``function`` (device synchronised around the loop)."""
    for _ in range(warmup):
        function()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3 / repeats


@dataclass(frozen=True)
class Row:
    """What one row of the step table runs: a guidance method, and overrides on top of it
    (a lever of that method, e.g. ``guidance.vsd.cuda_graph=false``) under its own name."""

    name: str
    method: str
    overrides: Tuple[str, ...] = ()


def method_row(method: str) -> Row:
    """The row of a plain method (``--methods``)."""
    return Row(method, method)


def variant_row(spec: str) -> Row:
    """``NAME=guidance.method=M,K=V,...`` (``--variant``) -> its row; the method must be named."""
    from ..eval.variants import parse_variant

    variant = parse_variant(spec)
    methods = [o.split("=", 1)[1] for o in variant.overrides if o.startswith("guidance.method=")]
    if len(methods) != 1:
        raise ConfigError(f"--variant '{spec}' must set guidance.method once")
    return Row(variant.name, methods[0],
               tuple(o for o in variant.overrides if not o.startswith("guidance.method=")))


def bench_config(settings: BenchSettings, views: int, method: str, gaussians: int,
                 resolution: int, extra: Sequence[str] = ()) -> Config:
    """The config of one combination (the settings' overrides, then ``extra``, last)."""
    cfg_scale = 100.0 if method == "sds" else 7.5  # VSD: ProlificDreamer's 7.5
    overrides = [
        f"prior.model={settings.prior}",
        f"prior.encoder={settings.encoder}", f"prior.cuda_graph={str(not settings.eager).lower()}",
        f"guidance.method={method}", f"guidance.cfg_scale={cfg_scale}",
        f"camera.batch_size={views}", f"camera.resolution={resolution}",
        f"init.num_points={gaussians}", f"densify.max_gaussians={gaussians}",
        f"steps={settings.steps + settings.warmup}",
        # densify state is updated every step; refinement itself every 100 steps
        "densify.default.refine_start_iter=100000",
    ] + list(settings.overrides) + list(extra)
    return resolve_config(settings.config, settings.prompt_of_prior, overrides)


def measure_floor(run: Run, repeats: int) -> Dict[str, float]:  # milliseconds
    """The irreducible parts of a step at this size, each timed alone."""
    c, device, prior = run.config, run.device, run.prior
    views, res = c.camera.batch_size, c.camera.resolution
    cameras = run.sampler.sample(generator=torch.Generator().manual_seed(0)).to(device)
    background = torch.ones(views, 3, device=device)

    def render_fb():
        out = run.model.render(cameras, res, res, background)
        out.rgb.sum().backward()
        for optimizer in run.optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    rgb = torch.rand(views, res, res, 3, device=device, requires_grad=True)

    def encode_fb():
        prior.encode(rgb).sum().backward()

    guidance: ScoreDistillation = run.guidance
    x0 = prior.encode(rgb.detach()).to(prior.dtype)
    graphed = GraphedCall(prior._eager_unet) if device.type == "cuda" else prior._eager_unet
    # the U-Net at each row count a step of this run can have, weighted by the share of
    # the run's steps that have it (NFSD: 2V rows below t = 200, 3V above)
    shares = unet_row_distribution(c.guidance, guidance.branches, views,
                                   prior.num_train_timesteps, c.steps)
    unet_ms = {}
    for rows in sorted(shares):
        z = x0.repeat(-(-rows // views), 1, 1, 1)[:rows]
        t = torch.full((rows,), 500, device=device, dtype=torch.long)
        embeddings = prior.embed([c.prompt] * rows)

        def unet_graph(z=z, t=t, embeddings=embeddings):
            with torch.no_grad():
                graphed(z, t, embeddings)

        unet_ms[rows] = time_ms(unet_graph, device, repeats)
    floor = {"floor_unet_graph": sum(unet_ms[rows] * share for rows, share in shares.items()),
             "floor_encode_fb": time_ms(encode_fb, device, repeats),
             "floor_render_fb": time_ms(render_fb, device, repeats)}
    floor["floor_total"] = sum(floor.values())
    floor["floor_unet_ms_by_rows"] = unet_ms
    return floor


# --------------------------------------------------------------------------- U-Net rows


def unet_row_distribution(config: GuidanceConfig, branches: Sequence[str], views: int,
                          num_train_timesteps: int, total_steps: int) -> Dict[int, float]:
    """{rows: the share of a whole run's steps whose U-Net call has that many rows}, exactly
    from the timestep schedule (NFSD leaving out the negative rows of views below the
    threshold: one shared t gives 2V or 3V rows, one t per view a binomial mix)."""
    full = len(branches) * views
    total_steps = max(total_steps, 1)
    if not ("negative" in branches and config.method == "nfsd" and config.negative_where_used):
        return {full: 1.0}
    shares: Dict[int, float] = {}
    for step in range(total_steps):
        p = probability_below(config, num_train_timesteps, step, total_steps,
                              config.negative_threshold_t)
        if config.t_per_view:
            mix = {k: math.comb(views, k) * p ** k * (1 - p) ** (views - k)
                   for k in range(views + 1)}
        else:
            mix = {views: p, 0: 1 - p}
        for below, share in mix.items():
            shares[full - below] = shares.get(full - below, 0.0) + share / total_steps
    return shares


def unet_rows_per_step(config: GuidanceConfig, branches: Sequence[str], views: int,
                       num_train_timesteps: int, total_steps: int) -> float:
    """The expected U-Net rows per step over a whole run, exactly (see
    :func:`unet_row_distribution`): K V less V P(t < threshold) on average over the steps."""
    distribution = unet_row_distribution(config, branches, views, num_train_timesteps,
                                         total_steps)
    return sum(rows * share for rows, share in distribution.items())


def bench_one(settings: BenchSettings, prior: DiffusionPrior, views: int, row: Row,
              gaussians: int, resolution: int) -> dict:
    """One row of the step table: ms per step, its phases, peak memory (allocated, and
    reserved: CUDA graphs keep their working memory in pools the allocator reserves, which
    ``max_memory_allocated`` does not count) and the floor."""
    config = bench_config(settings, views, row.method, gaussians, resolution, row.overrides)
    device = resolve_device(config.device)
    run = build_run(config, device=device, prior=prior)
    for step in range(settings.warmup):  # includes CUDA-graph capture and cuDNN autotuning
        training_step(run, step)
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for step in range(settings.warmup, settings.warmup + settings.steps):
        training_step(run, step)
    synchronize(device)
    step_ms = (time.perf_counter() - start) * 1e3 / settings.steps
    cuda = device.type == "cuda"
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else float("nan")
    reserved = torch.cuda.max_memory_reserved(device) / 2**30 if cuda else float("nan")

    timer = PhaseTimer(device)  # a separate pass: the events themselves cost a little
    first = settings.warmup + settings.steps
    for step in range(first, first + settings.timed_steps):
        training_step(run, step, timer)
    phases = timer.collect()
    floor = measure_floor(run, settings.floor_repeats)
    result = {"representation": config.representation, "views": views, "method": row.method,
              "variant": row.name, "overrides": list(row.overrides),
              "gaussians": run.model.num_primitives,
              "resolution": config.camera.resolution, "encoder": config.prior.encoder,
              "step_ms": step_ms, **{f"{p}_ms": phases.get(p, 0.0) for p in PHASES},
              **floor, "ratio": step_ms / floor["floor_total"], "peak_gib": peak,
              "peak_reserved_gib": reserved}
    del run
    if cuda:
        torch.cuda.empty_cache()
    return result


def format_table(rows: Sequence[dict]) -> str:
    """The step table (markdown), one row per combination."""
    columns = (["representation", "resolution", "views", "method", "gaussians", "encoder",
                "step_ms"]
               + [f"{p}_ms" for p in PHASES]
               + ["floor_unet_graph", "floor_encode_fb", "floor_render_fb", "floor_total",
                  "ratio", "peak_gib", "peak_reserved_gib"])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[c]:.1f}" if isinstance(row[c], float) and c != "ratio"
                 else f"{row[c]:.2f}" if c == "ratio" else str(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_to(rows: Sequence[dict], baseline: str) -> None:
    """Add ``vs_baseline`` to each row: its step time over the ``baseline`` row's (by
    variant name) at the same resolution, views and Gaussian count (None without one)."""
    def where(row):
        return row["resolution"], row["views"], row["gaussians"]

    reference = {where(r): r["step_ms"] for r in rows if r["variant"] == baseline}
    for row in rows:
        base = reference.get(where(row))
        row["vs_baseline"] = row["step_ms"] / base if base else None
        row["baseline"] = baseline


def format_variant_table(rows: Sequence[dict]) -> str:
    """The short table of variants (levers): step ms, of which the LoRA's (VSD's own model),
    peak GiB allocated and reserved, and the step time over the baseline's."""
    baseline = rows[0].get("baseline", "baseline") if rows else "baseline"
    lines = [f"| variant | views | step ms | of which LoRA ms | peak GiB | reserved GiB "
             f"| vs {baseline} |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r['vs_baseline']:.2f}x" if r.get("vs_baseline") else "-"
        lines.append(f"| {r['variant']} | {r['views']} | {r['step_ms']:.1f} | {r['lora_ms']:.1f} "
                     f"| {r['peak_gib']:.2f} | {r['peak_reserved_gib']:.2f} | {ratio} |")
    return "\n".join(lines)


def process_age_s() -> float:
    """Seconds since this process started (Linux /proc: the start time in clock ticks after
    boot against the uptime, both to 10 ms; /proc/stat's btime is whole seconds), or since
    this module was imported."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


_IMPORTED = time.perf_counter()
