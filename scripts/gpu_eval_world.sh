#!/usr/bin/env bash
# Issue 21's evaluation in one call: every object of the solid world (48 prompts) x seeds
# 0, 1, 2, Gaussians (nfsd@7.5) and the NeRF (nerf), scored by the one judge, the table
# printed last. PARALLEL evaluation processes share the GPU, each training ASSETS runs at
# once (one U-Net call per step for all of them, Gaussians and NeRF together: they share
# the bundled prior); prompts are split over the processes and merged at the end
# (scripts/gpu_eval.sh does the work). A stop at EVAL_TIMEOUT keeps every finished run.
#
# Usage (on the device, after `. .whl/gpu-env.sh`): scripts/gpu_eval_world.sh OUT_DIR
# Knobs: PARALLEL (4), ASSETS (8: the best M of one process in BENCHMARKS.md), EVAL_TIMEOUT (seconds,
# 440: a 10-minute call with its set-up and the stop), SEEDS (0,1,2), VARIANTS (nfsd@7.5,nerf), STEPS.
# The evaluation folder outputs/gpu_eval/solid survives on a warm machine: calling again
# continues (finished runs are kept).
# Writes OUT_DIR/results.json, results.md, eval.log, strips.tgz, worst.png and worst.md (the
# WORST=3 worst runs of each variant: scripts/gpu_eval.sh; WORST=0: none).
# DRY_RUN=1: 2 prompts, seed 0, 1 step, 2 processes of 2 runs at once (a Gaussian asset and
# a NeRF beside it in one pool), on the CPU; the NeRF small (default grid, 16 samples a ray,
# a 32^3 mesh): the named variant takes minutes a step there.
set -euo pipefail
. "$(dirname "$0")/common.sh"
OUT=${1:?output folder}
export PROMPTS=all PROMPTS_LIMIT= VARIANTS=${VARIANTS:-nfsd@7.5,nerf} SEEDS=${SEEDS:-0,1,2}
export PARALLEL=${PARALLEL:-4} ASSETS=${ASSETS:-8} EVAL_TIMEOUT=${EVAL_TIMEOUT:-440}
if [ "$DRY_RUN" = 1 ]; then
  small=camera.batch_size=1,nerf.mesh_resolution=32,nerf.occupancy_resolution=16,nerf.samples_per_ray=16
  export ASSETS=2 VARIANTS=nfsd@7.5 VARIANT_SPECS="nerf=representation=nerf,$small"
fi
exec bash "$(dirname "$0")/gpu_eval.sh" "$OUT" solid
