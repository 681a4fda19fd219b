#!/usr/bin/env bash
# Mesh extraction on the GPU (issue 13): time and face count for a bundled-prior asset
# (trained here, ~1 min) and a synthetic 100k-Gaussian asset, at resolution 128 and 256,
# plus the gpu-marked mesh test (CUDA field == CPU field). About 5 minutes.
# Usage (on the device, after `. .whl/gpu-env.sh`): scripts/gpu_mesh.sh OUT_DIR
# Writes OUT_DIR/{gpu.txt, log.txt, mesh_128.json, mesh_256.json, summary.md}.
# DRY_RUN=1: the logic on the CPU (the gpu test collected, a 2-step asset, one resolution
# of 16 on 1,000 synthetic Gaussians).
set -euo pipefail
. "$(dirname "$0")/common.sh"
OUT=${1:?output folder}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
DEVICE=cuda; RESOLUTIONS="128 256"; SYNTHETIC=100000; TRAIN=(); TESTS=()
if [ "$DRY_RUN" = 1 ]; then
  DEVICE=cpu; RESOLUTIONS=16; SYNTHETIC=1000; TESTS=(--collect-only)
  TRAIN=(steps=2 camera.batch_size=1 init.num_points=100)
fi
device_info > "$OUT/gpu.txt"
python -c "import torch, trimesh, mcubes; print('torch', torch.__version__, 'trimesh', trimesh.__version__)" >> "$OUT/gpu.txt" 2>&1
FACES=100000
if ! python -c "import fast_simplification" >> "$OUT/gpu.txt" 2>&1; then
  echo "fast-simplification missing: no decimation (face budget 0)" | tee -a "$OUT/gpu.txt"
  FACES=0
fi

echo "== gpu mesh test"; date
echo "== gpu mesh test" >> "$LOG"
tolerate timeout 120 python -m pytest -q -m gpu "${TESTS[@]}" tests/test_mesh.py -p no:cacheprovider >> "$LOG" 2>&1
tail -1 "$LOG"

echo "== bundled-prior asset: a red cone (400 steps)"; date
echo "== train" >> "$LOG"
RUNS=$(mktemp -d /tmp/mesh_runs.XXXX)
tolerate timeout 150 python -m nfsd_gs.train --prompt "a red cone" --no-progress output.turntable=false \
  output.name=red_cone --output-root "$RUNS" "${TRAIN[@]}" >> "$LOG" 2>&1
tail -1 "$LOG"
PLY=()
if [ -f "$RUNS/red_cone/model.ply" ]; then PLY=(--ply "$RUNS/red_cone/model.ply"); fi

echo "# mesh extraction, $(head -1 "$OUT/gpu.txt" | cut -d, -f1), $(date -u +%F)" > "$OUT/summary.md"
for RES in $RESOLUTIONS; do
  echo "== mesh extraction, resolution $RES"; date
  echo "== bench resolution $RES" >> "$LOG"
  echo >> "$OUT/summary.md"
  tolerate timeout 150 python scripts/bench_mesh.py --device "$DEVICE" "${PLY[@]}" --synthetic "$SYNTHETIC" \
    --resolution $RES --faces $FACES --json "$OUT/mesh_$RES.json" >> "$OUT/summary.md" 2>> "$LOG"
  [ "$rc" = 0 ] || echo "resolution $RES: failed or timed out (rc=$rc; see log.txt)" >> "$OUT/summary.md"
done
cat "$OUT/summary.md"
rm -rf "$RUNS"
