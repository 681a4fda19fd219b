#!/usr/bin/env bash
# Judge scores of the NeRF toggle on the bundled prior (issue 15, item 7): the default
# preset's small grid (2^16 entries up to 256) against NerfConfig's threestudio sizes
# (2^19 up to 2048), 6 prompts x 400 steps each, plus the Gaussians for reference.
# Usage (on the device, after `. .whl/gpu-env.sh`): scripts/gpu_nerf_default.sh OUT_DIR
# About 4-5 minutes on one H100; each evaluation is cut at 150 s and keeps what it finished.
# DRY_RUN=1: the logic on the CPU: the first variant only, with a tiny grid and field,
# 1 step, 1 prompt.
set -euo pipefail
. "$(dirname "$0")/common.sh"
OUT=${1:?output folder}
DEVICE=${DEVICE:-cuda}
EVAL_ARGS=(${EVAL_ARGS:---limit 6})
VARIANTS=("nerf_small=representation=nerf"
          "nerf_threestudio=representation=nerf,nerf.log2_table_size=19,nerf.max_resolution=2048,nerf.chunk_rays=8192"
          "gaussians=representation=gaussians")
if [ "$DRY_RUN" = 1 ]; then
  DEVICE=cpu; VARIANTS=("${VARIANTS[0]}")
  EVAL_ARGS=(--steps 1 --limit 1 --no-warmup --align-yaws 8 --align-scales 0.65,1.3,3
             camera.batch_size=1 nerf.num_levels=2 nerf.log2_table_size=8 nerf.max_resolution=16
             nerf.hidden_dim=8 nerf.samples_per_ray=8 nerf.occupancy_resolution=8
             nerf.mesh_resolution=16)
fi
mkdir -p "$OUT"
device_info > "$OUT/gpu.txt"
names=()
for variant in "${VARIANTS[@]}"; do
  name=${variant%%=*}; names+=("$name")
  echo "== $name"; date
  tolerate timeout 150 python -m nfsd_gs.eval --variants none --variant "$variant" "${EVAL_ARGS[@]}" \
    --device "$DEVICE" --out "$OUT/eval_$name" > "$OUT/eval_$name.log" 2>&1
  echo "rc=$rc" >> "$OUT/eval_$name.log"
done
# one table, the six prompts of each variant (results.md of each evaluation)
for name in "${names[@]}"; do
  echo "### $name"; cat "$OUT/eval_$name/results.md" 2>/dev/null || tail -3 "$OUT/eval_$name.log"
done > "$OUT/summary.md"
# everything else in one archive (no .ply/.obj: the tables, logs and image strips)
(cd "$OUT" && tar czf evals.tgz --exclude='*.ply' --exclude='*.obj' eval_* && rm -rf eval_*)
cat "$OUT/summary.md"
