#!/usr/bin/env bash
# Judge scores of the NeRF toggle on the bundled prior (issue 15, item 7): the default
# preset's small grid (2^16 entries up to 256) against NerfConfig's threestudio sizes
# (2^19 up to 2048), 6 prompts x 400 steps each, plus the Gaussians for reference.
# Usage (on the device, after `. .whl/gpu-env.sh`): scripts/gpu_nerf_default.sh OUT_DIR
# About 4-5 minutes on one H100; each evaluation is cut at 150 s and keeps what it finished.
# A CPU dry run of the logic: DEVICE=cpu EVAL_ARGS="--steps 2 --limit 1" scripts/gpu_nerf_default.sh /tmp/x
set -u
OUT=${1:?output folder}
DEVICE=${DEVICE:-cuda}
EVAL_ARGS=${EVAL_ARGS:---limit 6}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
for variant in "nerf_small=representation=nerf" \
               "nerf_threestudio=representation=nerf,nerf.log2_table_size=19,nerf.max_resolution=2048,nerf.chunk_rays=8192" \
               "gaussians=representation=gaussians"; do
  name=${variant%%=*}
  echo "== $name"; date
  timeout 150 python -m nfsd_gs.eval --variants none --variant "$variant" $EVAL_ARGS \
    --device "$DEVICE" --out "$OUT/eval_$name" > "$OUT/eval_$name.log" 2>&1
  echo "rc=$?" >> "$OUT/eval_$name.log"
done
# one table, the six prompts of each variant (results.md of each evaluation)
for name in nerf_small nerf_threestudio gaussians; do
  echo "### $name"; cat "$OUT/eval_$name/results.md" 2>/dev/null || tail -3 "$OUT/eval_$name.log"
done > "$OUT/summary.md"
# everything else in one archive (no .ply/.obj: the tables, logs and image strips)
(cd "$OUT" && tar czf evals.tgz --exclude='*.ply' --exclude='*.obj' eval_* && rm -rf eval_*)
cat "$OUT/summary.md"
