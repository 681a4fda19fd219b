"""One whole asset as a user pays for it, and the levers of issue 25 one at a time.

:func:`bench_asset` (``--asset``) times one asset in one process: start-up (process start
to the first training step) with its profile by phase, the training loop, the outputs
after it, the end-to-end time, then (outside that time) the step's floor.

:func:`bench_levers` (``--levers``) measures, in one process, each lever alone over the
baseline (the state before issue 25) and together (this release's defaults, and every
lever on):

* start-up s: the profile's shared phases (interpreter and imports, config, CUDA context,
  diffusers and transformers, text encoding, representation, gsplat's kernels) plus the
  load of the lever's load path (each distinct path loaded and timed once);
* step ms: the mean of ``sample_steps`` real training steps at step indices spread evenly
  over the whole schedule (so the timesteps follow the schedule, t_max annealing
  included), after the U-Net's graphs are captured for every row count the run can ask
  for and two warm-up steps; with the U-Net time of those steps replaced by the exact
  expectation over the schedule (each row count's share of the steps, computed from the
  t schedule, times its U-Net ms timed alone), so a few samples of t do not decide it;
* first-use s: those captures and warm-up steps less two steady steps (graph capture,
  cuDNN's algorithm search, compilation);
* loop s = first-use s + steps x step ms, end to end s = start-up s + loop s + outputs s
  (outputs timed once): estimates, labelled so, not a run of the asset. The asset mode
  measures the real thing.

The log, snapshots and checkpoints of a real loop are not in the sampled steps; the
Gaussian count is fixed (``--gaussians``, refinement off).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import torch

from ..config import Config, resolve_config
from ..guidance import ScoreDistillation
from ..guidance.prior import DiffusionPrior, import_model_libraries
from ..render.rasterize import load_kernels
from ..train.run import Run, build_run, start_run
from ..train.step import training_step
from ..utils.device import device_name, init_device, resolve_device
from ..utils.timing import WallTimer, synchronize
from .measure import (BenchSettings, measure_floor, process_age_s, time_ms,
                      unet_row_distribution, unet_rows_per_step)

#: The configuration before issue 25, which every single lever is measured against.
BASELINE: Tuple[str, ...] = (
    "prior.load_direct=false", "prior.variant=null", "prior.encoder_layout=strided",
    "guidance.negative_where_used=false", "prior.compile_encoder=false",
    "prior.compile_unet=false", "prior.cudnn_benchmark=false", "prior.unet_channels_last=false")


@dataclass(frozen=True)
class Lever:
    """One row of the lever table: overrides on top of the baseline (``on_baseline``) or
    on top of this release's defaults."""

    name: str
    overrides: Tuple[str, ...]
    description: str
    on_baseline: bool = True


LEVERS: Tuple[Lever, ...] = (
    Lever("baseline", (), "before issue 25: float32 load then cast, strided encoder input, "
          "every negative row"),
    Lever("direct-load", ("prior.load_direct=true",),
          "weights straight to the GPU in fp16 (from_pretrained torch_dtype + device_map)"),
    Lever("direct-load-fp16-files", ("prior.load_direct=true", "prior.variant=fp16"),
          "the same from *.fp16.safetensors (half the bytes)"),
    Lever("contiguous", ("prior.encoder_layout=contiguous",), "encoder input copied to NCHW"),
    Lever("channels-last", ("prior.encoder_layout=channels_last",),
          "encoder input and VAE weights channels-last"),
    Lever("negative-where-used", ("guidance.negative_where_used=true",),
          "NFSD's negative rows only for views with t >= 200 (2V + k rows)"),
    Lever("compile", ("prior.encoder_layout=contiguous", "prior.compile_encoder=true"),
          "torch.compile of the encoder, on the contiguous input (compare with 'contiguous'; "
          "first-use s: compilation, cold or warm cache)"),
    Lever("compile-unet", ("prior.compile_unet=true",),
          "torch.compile of the U-Net call, replayed in its CUDA graph (rows dynamic: one "
          "compilation for every row count; first-use s: compilation)"),
    Lever("cudnn-benchmark", ("prior.cudnn_benchmark=true",), "cuDNN algorithm search"),
    Lever("unet-channels-last", ("prior.unet_channels_last=true",),
          "U-Net weights channels-last"),
    Lever("defaults", (), "this release's defaults", on_baseline=False),
    Lever("all", ("prior.compile_encoder=true", "prior.compile_unet=true",
                  "prior.cudnn_benchmark=true"),
          "the defaults plus both compilations and cuDNN search (after 'compile' and "
          "'compile-unet' in the same process, their compilations are reused: first-use s as "
          "a warm cache)", on_baseline=False),
)
LEVER_NAMES = tuple(lever.name for lever in LEVERS)


def lever_by_name(name: str) -> Lever:
    from ..errors import ConfigError

    for lever in LEVERS:
        if lever.name == name:
            return lever
    raise ConfigError(f"lever '{name}' is not one of {', '.join(LEVER_NAMES)}")


def asset_overrides(settings: BenchSettings) -> List[str]:
    """What every asset and lever run asks for, before the lever's and the user's overrides."""
    return [f"prior.model={settings.prior}", f"prior.encoder={settings.encoder}",
            f"steps={settings.asset_steps}"]


def lever_config(settings: BenchSettings, lever: Lever) -> Config:
    """The config of one lever: the asset's, with a fixed Gaussian count (refinement off:
    the steps are sampled out of order), the baseline if the lever sits on it, the lever's
    overrides, then the settings' own."""
    overrides = asset_overrides(settings) + [
        f"init.num_points={settings.gaussians}", f"densify.max_gaussians={settings.gaussians}",
        "densify.default.refine_start_iter=100000"]
    overrides += list(BASELINE if lever.on_baseline else ()) + list(lever.overrides)
    return resolve_config(settings.config, settings.prompt_of_prior,
                          overrides + list(settings.overrides))


# --------------------------------------------------------------------------- U-Net rows


def possible_row_counts(guidance: ScoreDistillation, views: int, t_per_view: bool) -> List[int]:
    """Every row count the run's U-Net call can have: the layouts of all-low and all-high
    timesteps and, with one t per view, every mix."""
    low, high = 0, guidance.prior.num_train_timesteps - 1
    mixes = range(views + 1) if t_per_view else (0, views)
    counts: Set[int] = set()
    for k in mixes:
        t = torch.tensor([high] * k + [low] * (views - k))
        counts.add(guidance.row_layout(t).rows)
    return sorted(counts)


def capture_unet(run: Run) -> Dict[int, tuple]:
    """Call the U-Net once per possible row count (capturing its CUDA graphs, if any);
    returns the inputs used, {rows: (z, t, embeddings)}."""
    prior, views = run.prior, run.config.camera.batch_size
    unet = prior.unet.config
    inputs = {}
    for rows in possible_row_counts(run.guidance, views, run.config.guidance.t_per_view):
        z = torch.randn(rows, unet.in_channels, unet.sample_size, unet.sample_size,
                        device=run.device)
        t = torch.randint(20, 980, (rows,), device=run.device)
        inputs[rows] = (z, t, prior.embed([run.config.prompt] * rows))
        prior.predict_noise(*inputs[rows])
    return inputs


# --------------------------------------------------------------------------- one asset


def startup_profile(profile: WallTimer, startup_s: float) -> Dict[str, float]:
    """The profile's phases and "other" (start-up not inside any phase)."""
    return {**profile.seconds, "other": max(startup_s - profile.total(), 0.0)}


def bench_asset(settings: BenchSettings, entry_s: float) -> dict:
    """One asset end to end (see the module docstring); returns the row of the table.

    ``entry_s``: the process's age when the command's main function began (the
    interpreter and the imports of the command's modules)."""
    from ..train.loop import train

    profile = WallTimer()
    profile.add("python, nfsd_gs imports", entry_s)
    with profile.phase("config"):
        config = resolve_config(settings.config, settings.prompt_of_prior,
                                asset_overrides(settings) + list(settings.overrides),
                                output_root=tempfile.mkdtemp(prefix="nfsd_asset_"))
    run, run_dir = start_run(config, timer=profile)
    with profile.phase("gsplat kernels"):
        load_kernels(config.render.backend, run.device)
    startup_s = process_age_s()
    before_train = time.perf_counter()
    train(run, run_dir, progress=False)
    synchronize(run.device)
    train_s = time.perf_counter() - before_train
    end_to_end_s = process_age_s()
    log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    loop_s = float(log[-1]["elapsed_s"])
    steps = max(config.steps, 1)
    step_ms = loop_s * 1e3 / steps
    before_floor = time.perf_counter()
    floor = measure_floor(run, settings.floor_repeats)
    floor_s = time.perf_counter() - before_floor
    g = run.guidance
    views = config.camera.batch_size
    return {"encoder": config.prior.encoder, "steps": config.steps, "startup_s": startup_s,
            "loop_s": loop_s, "step_ms": step_ms, "outputs_s": train_s - loop_s,
            "end_to_end_s": end_to_end_s, **floor, "ratio": step_ms / floor["floor_total"],
            "first_log_extra_s": first_steps_extra(log, loop_s, config.steps),
            "unet_rows": g.unet_rows, "unet_rows_all_branches": len(g.branches) * views * steps,
            "unet_rows_expected": unet_rows_per_step(config.guidance, g.branches, views,
                                                     run.prior.num_train_timesteps,
                                                     config.steps) * steps,
            "startup_profile": startup_profile(profile, startup_s), "floor_s": floor_s,
            "gaussians": run.model.num_primitives, "overrides": list(settings.overrides),
            "device": device_name(run.device)}


def first_steps_extra(log: List[dict], loop_s: float, steps: int) -> Optional[float]:
    """Seconds the steps up to the first log line took beyond the steady rate of the rest
    (graph capture, cuDNN's search, compilation), or None with one log line only."""
    if len(log) < 2:
        return None
    first_step, first_s = int(log[0]["step"]), float(log[0]["elapsed_s"])
    steady_s = (loop_s - first_s) / max(steps - first_step, 1)
    return first_s - first_step * steady_s


# --------------------------------------------------------------------------- the levers


def measure_steps(run: Run, samples: int) -> dict:
    """First-use seconds, the steady ms of a step sampled over the whole schedule, the U-Net
    rows those steps asked for, and the U-Net's ms per row count (timed alone)."""
    device, total, prior = run.device, run.config.steps, run.prior
    start = time.perf_counter()
    inputs = capture_unet(run)
    warmup = [0, total // 2]
    for step in warmup:
        training_step(run, step)
    synchronize(device)
    warm_s = time.perf_counter() - start
    indices = torch.linspace(0, max(total - 1, 0), samples).round().long().tolist()
    rows = []
    start = time.perf_counter()
    for step in indices:
        before = run.guidance.unet_rows
        training_step(run, step)
        rows.append(run.guidance.unet_rows - before)
    synchronize(device)
    sampled_ms = (time.perf_counter() - start) * 1e3 / len(indices)
    unet_ms = {count: time_ms(lambda args=args: prior.predict_noise(*args), device, 5, warmup=1)
               for count, args in inputs.items()}
    # the sampled steps' U-Net calls, replaced by the schedule's exact mix of row counts
    g, c = run.guidance, run.config
    distribution = unet_row_distribution(c.guidance, g.branches, c.camera.batch_size,
                                         prior.num_train_timesteps, total)
    sampled_unet_ms = sum(unet_ms[r] for r in rows) / len(rows)
    expected_unet_ms = sum(unet_ms[r] * share for r, share in distribution.items())
    step_ms = sampled_ms - sampled_unet_ms + expected_unet_ms
    return {"step_ms": step_ms, "sampled_step_ms": sampled_ms,
            "first_use_s": max(warm_s - len(warmup) * sampled_ms / 1e3, 0.0),
            "unet_rows_sampled": sum(rows) / len(rows), "unet_ms_by_rows": unet_ms,
            "unet_ms_expected": expected_unet_ms,
            "unet_rows_expected": sum(r * share for r, share in distribution.items())}


def measure_outputs(run: Run) -> float:
    """Seconds to write what a finished run leaves (checkpoint, model, extras)."""
    from ..train.loop import write_outputs

    with tempfile.TemporaryDirectory(prefix="nfsd_outputs_") as folder:
        start = time.perf_counter()
        write_outputs(run, Path(folder))
        synchronize(run.device)
        return time.perf_counter() - start


def load_key(config: Config) -> Tuple[bool, Optional[str]]:
    return config.prior.load_direct, config.prior.variant


def bench_levers(settings: BenchSettings, names: Sequence[str], entry_s: float) -> dict:
    """Each lever of ``names`` in one process (see the module docstring)."""
    levers = [lever_by_name(name) for name in names]
    shared = WallTimer()
    shared.add("python, nfsd_gs imports", entry_s)
    configs, config_s = {}, {}
    for lever in levers:  # a process resolves one config: each lever's own time
        start = time.perf_counter()
        configs[lever.name] = lever_config(settings, lever)
        config_s[lever.name] = time.perf_counter() - start
    shared.add("config", config_s[levers[0].name])
    first = configs[levers[0].name]
    device = resolve_device(first.device)
    with shared.phase("CUDA context"):
        init_device(device)
    with shared.phase("import diffusers, transformers"):
        import_model_libraries()
    loads: Dict[Tuple[bool, Optional[str]], Dict[str, float]] = {}
    prior = None
    for config in configs.values():  # each load path once, one prior kept at a time
        if load_key(config) not in loads:
            prior = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
            timer = WallTimer()
            prior = DiffusionPrior.load(config.prior, device, timer)
            loads[load_key(config)] = timer.seconds
    rows, outputs_s, build_phases = [], None, None
    for lever in levers:
        config = configs[lever.name]
        prior.configure(config.prior)
        build = WallTimer()
        run = build_run(config, device, prior, timer=build)
        with build.phase("gsplat kernels"):
            load_kernels(config.render.backend, device)
        if build_phases is None:  # the first build pays the text encoding
            build_phases = {k: v for k, v in build.seconds.items() if k not in shared.seconds}
        measured = measure_steps(run, settings.sample_steps)
        if outputs_s is None:
            outputs_s = measure_outputs(run)
        load_s = sum(s for name, s in loads[load_key(config)].items()
                     if name != "import diffusers, transformers")
        startup_s = (shared.total() - shared.seconds["config"] + config_s[lever.name] + load_s
                     + sum(build_phases.values()))
        loop_s = measured["first_use_s"] + config.steps * measured["step_ms"] / 1e3
        rows.append({
            "lever": lever.name, "description": lever.description,
            "overrides": list(BASELINE if lever.on_baseline else ()) + list(lever.overrides),
            "startup_s": startup_s, "load_s": load_s, **measured, "loop_s": loop_s,
            "outputs_s": outputs_s, "end_to_end_s": startup_s + loop_s + outputs_s,
            "estimated": True})
        del run
    baseline = next((r for r in rows if r["lever"] == "baseline"), None)
    for row in rows:
        row["vs_baseline_s"] = row["end_to_end_s"] - baseline["end_to_end_s"] if baseline else None
    return {"encoder": settings.encoder, "steps": settings.asset_steps,
            "gaussians": settings.gaussians, "sample_steps": settings.sample_steps,
            "device": device_name(device), "rows": rows,
            "startup_profile": {**shared.seconds, **build_phases},
            "loads": {f"load_direct={k[0]}, variant={k[1]}": v for k, v in loads.items()}}


# --------------------------------------------------------------------------- tables


def _cell(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def format_asset_table(row: dict) -> str:
    """The one-asset table (markdown), then its start-up profile."""
    columns = ["encoder", "steps", "startup_s", "loop_s", "step_ms", "floor_total", "ratio",
               "outputs_s", "end_to_end_s", "unet_rows", "device"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
             "| " + " | ".join(_cell(row[c]) for c in columns) + " |", ""]
    return "\n".join(lines + [format_profile(row["startup_profile"], row["startup_s"])])


def format_profile(profile: Dict[str, float], total: Optional[float] = None) -> str:
    """The start-up profile (markdown): one row per phase, in order."""
    total = sum(profile.values()) if total is None else total
    lines = ["| start-up phase | s | share |", "|---|---:|---:|"]
    lines += [f"| {name} | {seconds:.2f} | {100 * seconds / max(total, 1e-9):.0f} % |"
              for name, seconds in profile.items()]
    return "\n".join(lines + [f"| **total** | **{total:.2f}** | |"])


def format_lever_table(result: dict) -> str:
    """The lever table (markdown): lever, start-up s, step ms, loop s, end to end s, vs
    baseline, and the U-Net rows a step."""
    lines = [f"encoder {result['encoder']}, {result['steps']} steps, {result['gaussians']} "
             f"Gaussians, {result['device']}; loop and end to end are estimates (see "
             "nfsd_gs/bench/asset.py)", "",
             "| lever | start-up s | first-use s | step ms | loop s | end-to-end s | vs baseline s "
             "| U-Net rows/step (sampled, expected) |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in result["rows"]:
        lines.append(
            f"| {row['lever']} | {row['startup_s']:.1f} | {row['first_use_s']:.1f} | "
            f"{row['step_ms']:.1f} | {row['loop_s']:.1f} | {row['end_to_end_s']:.1f} | "
            f"{_cell(row['vs_baseline_s'], 1)} | {row['unet_rows_sampled']:.2f}, "
            f"{row['unet_rows_expected']:.2f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the report

#: Issue 25's targets: end to end s per encoder, and start-up s.
TARGETS_S = {"vae": 135.0, "taesd": 65.0}
STARTUP_TARGET_S = 8.0
TARGET_STEPS = 1200


def with_second_compile(levers: dict, second: Optional[dict]) -> dict:
    """The lever result plus a row "<lever> (second asset)" for each compile lever that a
    second process measured again with the compile cache filled (``second``: that process's
    ``--levers compile ...`` result): the first process's row with the second's first-use s
    and step ms."""
    rows = list(levers["rows"])
    baseline = next((r for r in rows if r["lever"] == "baseline"), None)
    for again in (second or {}).get("rows", []):
        first = next((r for r in rows if r["lever"] == again["lever"]), None)
        if first is None:
            continue
        loop_s = again["first_use_s"] + levers["steps"] * again["step_ms"] / 1e3
        end_to_end_s = first["startup_s"] + loop_s + first["outputs_s"]
        rows.insert(rows.index(first) + 1, {
            **first, "lever": f"{again['lever']} (second asset)",
            "description": "the same, in a new process with the compile cache filled",
            "first_use_s": again["first_use_s"], "step_ms": again["step_ms"],
            "loop_s": loop_s, "end_to_end_s": end_to_end_s,
            "vs_baseline_s": end_to_end_s - baseline["end_to_end_s"] if baseline else None})
    return {**levers, "rows": rows}


def asset_report(encoder: str, asset: Optional[dict], levers: Optional[dict],
                 second_compile: Optional[dict] = None) -> Tuple[dict, str]:
    """One encoder's results of ``scripts/gpu_asset.sh`` -> (the JSON to keep, markdown):
    the measured asset against the targets, its start-up profile, the lever table."""
    lines = [f"## {'SD VAE' if encoder == 'vae' else 'TAESD'}", ""]
    if asset is not None:
        target = TARGETS_S.get(encoder)
        met = lambda value, limit: "met" if value <= limit else "NOT met"  # noqa: E731
        lines += ["Measured asset (this release's defaults"
                  + (f"; overrides: {' '.join(asset['overrides'])}" if asset["overrides"] else "")
                  + f"), {asset['device']}:", "", format_asset_table(asset), ""]
        if target is not None and asset["steps"] == TARGET_STEPS:
            lines += [f"End to end {asset['end_to_end_s']:.1f} s against {target:.0f} s: "
                      f"{met(asset['end_to_end_s'], target)}; start-up "
                      f"{asset['startup_s']:.1f} s against {STARTUP_TARGET_S:.0f} s: "
                      f"{met(asset['startup_s'], STARTUP_TARGET_S)}.", ""]
    else:
        lines += ["The asset was not measured (see the logs).", ""]
    if levers is not None:
        levers = with_second_compile(levers, second_compile)
        lines += ["Levers (one process; start-up composed from its phases):", "",
                  format_lever_table(levers), "", "Its start-up phases:", "",
                  format_profile(levers["startup_profile"]), ""]
    else:
        lines += ["The levers were not measured (see the logs).", ""]
    return {"asset": asset, "levers": levers, "second_compile": second_compile}, "\n".join(lines)
