#!/usr/bin/env bash
# Screening sweep (issue 18): which Gaussian settings make the speckles and the
# softness, on the bundled prior, NFSD@7.5, against the NeRF toggle in the same run.
# Usage (on the device, after `. .whl/gpu-env.sh`): scripts/gpu_sweep_gaussians.sh OUT PROMPTS_LIMIT
# DRY_RUN=1: the logic on the CPU: the first two variants, 1 step, 1 prompt, a tiny NeRF bench.
set -euo pipefail
. "$(dirname "$0")/common.sh"
OUT=${1:?output folder}; LIMIT=${2:-6}
mkdir -p "$OUT"
E=$(mktemp -d /tmp/sweep.XXXX)
EVAL=(); BENCH=(--resolution 64 256 --views 4 --gaussians 1000 --steps 10)
if [ "$DRY_RUN" = 1 ]; then
  LIMIT=1
  EVAL=(--steps 1 --no-warmup --device cpu --align-yaws 8 --align-scales 0.65,1.3,3
        camera.batch_size=1 init.num_points=50)
  BENCH=(--prior random:tiny --resolution 32 --views 1 --gaussians 100 --steps 1 --warmup 1
         --timed-steps 1 --floor-repeats 1 nerf.num_levels=2 nerf.log2_table_size=8
         nerf.max_resolution=16 nerf.samples_per_ray=8)
fi
V=()
for spec in \
  "base=guidance.method=nfsd" \
  "grey-init=init.color=[0.5,0.5,0.5]" \
  "opa-lr-0.01=gaussians.opacities_lr=0.01" \
  "no-densify=densify.strategy=none" \
  "mcmc=densify.strategy=mcmc,densify.mcmc.cap_max=20000" \
  "prune-0.05=densify.default.prune_opa=0.05" \
  "t-end-0.3=guidance.t_max_end=0.3" \
  "eps2d-0.1=render.eps2d=0.1" \
  "sh0-lr-0.005=gaussians.sh0_lr=0.005" \
  "combo=init.color=[0.5,0.5,0.5],gaussians.opacities_lr=0.01,densify.default.prune_opa=0.05" \
  "nerf=representation=nerf" ; do V+=(--variant "$spec"); done
[ "$DRY_RUN" = 1 ] && V=("${V[@]:0:4}")  # two variants
tolerate timeout 430 python -m nfsd_gs.eval --variants none "${V[@]}" --limit "$LIMIT" --out "$E" \
  "${EVAL[@]}" guidance.method=nfsd guidance.cfg_scale=7.5 > "$OUT/sweep.log" 2>&1
echo "eval rc=$rc"
cp "$E/results.md" "$E/results.json" "$OUT/" 2>/dev/null || echo "no results written"
if [ -d "$E/strips" ]; then tar czf "$OUT/strips.tgz" -C "$E" strips; fi
echo "== nerf bench"
tolerate timeout 100 python -m nfsd_gs.bench --config nfsd_nerf --methods nfsd "${BENCH[@]}" \
  --json "$OUT/nerf_bench.json" nerf.coarse_steps=0 > "$OUT/nerf_bench.md" 2> "$OUT/nerf_bench.log"
echo "bench rc=$rc"; cat "$OUT/nerf_bench.md"
tail -30 "$OUT/results.md" || true
rm -rf "$E"
