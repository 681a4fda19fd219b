#!/usr/bin/env bash
# Screening sweep (issue 18): which Gaussian settings make the speckles and the
# softness, on the bundled prior, NFSD@7.5, against the NeRF toggle in the same run.
# Usage (on the device, after `. .whl/gpu-env.sh`): scripts/gpu_sweep_gaussians.sh OUT PROMPTS_LIMIT
set -u
OUT=${1:?output folder}; LIMIT=${2:-6}
mkdir -p "$OUT"
E=/tmp/sweep
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
timeout 430 python -m nfsd_gs.eval --variants none "${V[@]}" --limit "$LIMIT" --out "$E" \
  guidance.method=nfsd guidance.cfg_scale=7.5 > "$OUT/sweep.log" 2>&1
echo "eval rc=$?"
cp "$E/results.md" "$E/results.json" "$OUT/" 2>/dev/null
tar czf "$OUT/strips.tgz" -C "$E" strips
echo "== nerf bench"; timeout 100 python -m nfsd_gs.bench --config nfsd_nerf --resolution 64 256 \
  --views 4 --methods nfsd --gaussians 1000 --steps 10 --json "$OUT/nerf_bench.json" nerf.coarse_steps=0 \
  > "$OUT/nerf_bench.md" 2> "$OUT/nerf_bench.log"; echo "bench rc=$?"; cat "$OUT/nerf_bench.md"
tail -30 "$OUT/results.md"
