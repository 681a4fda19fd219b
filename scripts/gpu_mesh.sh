#!/usr/bin/env bash
# Mesh extraction on the GPU (issue 13): time and face count for a bundled-prior asset
# (trained here, ~1 min) and a synthetic 100k-Gaussian asset, at resolution 128 and 256,
# plus the gpu-marked mesh test (CUDA field == CPU field). About 5 minutes.
# Usage (on the device, after `. .whl/gpu-env.sh`): scripts/gpu_mesh.sh OUT_DIR
# Writes OUT_DIR/{gpu.txt, log.txt, mesh_128.json, mesh_256.json, summary.md}.
set -u
OUT=${1:?output folder}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python -c "import torch, trimesh, mcubes; print('torch', torch.__version__, 'trimesh', trimesh.__version__)" >> "$OUT/gpu.txt" 2>&1
FACES=100000
if ! python -c "import fast_simplification" >> "$OUT/gpu.txt" 2>&1; then
  echo "fast-simplification missing: no decimation (face budget 0)" | tee -a "$OUT/gpu.txt"
  FACES=0
fi

echo "== gpu mesh test"; date
echo "== gpu mesh test" >> "$LOG"
timeout 120 python -m pytest -q -m gpu tests/test_mesh.py -p no:cacheprovider >> "$LOG" 2>&1
tail -1 "$LOG"

echo "== bundled-prior asset: a red cone (400 steps)"; date
echo "== train" >> "$LOG"
timeout 150 python -m nfsd_gs.train --prompt "a red cone" --no-progress output.turntable=false \
  output.name=red_cone --output-root /tmp/mesh_runs >> "$LOG" 2>&1
tail -1 "$LOG"
PLY=()
[ -f /tmp/mesh_runs/red_cone/model.ply ] && PLY=(--ply /tmp/mesh_runs/red_cone/model.ply)

echo "# mesh extraction, $(sed -n 2p "$OUT/gpu.txt" | cut -d, -f1), $(date -u +%F)" > "$OUT/summary.md"
for RES in 128 256; do
  echo "== mesh extraction, resolution $RES"; date
  echo "== bench resolution $RES" >> "$LOG"
  echo >> "$OUT/summary.md"
  timeout 150 python scripts/bench_mesh.py --device cuda "${PLY[@]}" --synthetic 100000 \
    --resolution $RES --faces $FACES --json "$OUT/mesh_$RES.json" >> "$OUT/summary.md" 2>> "$LOG" \
    || echo "resolution $RES: failed or timed out (rc=$?; see log.txt)" >> "$OUT/summary.md"
done
cat "$OUT/summary.md"
