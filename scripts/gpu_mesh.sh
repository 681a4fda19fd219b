#!/usr/bin/env bash
# Mesh export on the GPU (issues 13, 26, 27.10): seconds per phase (load, field, marching
# cubes, simplify, unwrap, bake, write) and face count, end to end from the .ply, for
#   * a bundled-prior asset: "a red cone", trained here (400 steps, ~3k Gaussians);
#   * a synthetic 100k-Gaussian asset (scripts/bench_mesh.py: a cone filled by our init);
# at grid resolution 128 and 256, with vertex colours and with a 1024 texture (xatlas atlas,
# baked from 24 views of the Gaussians). Face budget: the one from the object (the default).
# Then the gpu-marked mesh tests (CUDA field == CPU field, gsplat bake == reference bake).
# About 3 minutes on an H200.
#
# Usage (on the device, after `. .whl/gpu-env.sh`; needs xatlas among the wheels):
#   scripts/gpu_mesh.sh OUT_DIR
#   DRY_RUN=1 scripts/gpu_mesh.sh OUT_DIR   # CPU, tiny sizes (< 40 s): checks the script itself
# Writes OUT_DIR/{gpu.txt, log.txt, mesh_red_cone.json, mesh_synthetic.json, summary.md,
# red_cone_tex1024.glb}; the .ply files and other meshes stay in OUT_DIR/work (removed at the end).
set -euo pipefail
. "$(dirname "$0")/common.sh"
OUT=${1:?usage: scripts/gpu_mesh.sh OUT_DIR}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
WORK="$OUT/work"
LOG="$OUT/log.txt"
: > "$LOG"

if [ "$DRY_RUN" = 1 ]; then
  DEVICE=cpu SYNTHETIC=3000 TEXTURE=64 RESOLUTIONS=(24 32)
  TRAIN=(--config tiny_test steps=2) BAKE=(--views 4)
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
else
  DEVICE=cuda SYNTHETIC=100000 TEXTURE=1024 RESOLUTIONS=(128 256)
  TRAIN=() BAKE=()
fi
RES_ARGS=()
for RES in "${RESOLUTIONS[@]}"; do RES_ARGS+=(--resolution "$RES"); done

{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || echo "no GPU (DRY_RUN=${DRY_RUN:-0})"
  python -c "from importlib.metadata import version; import xatlas, mcubes, fast_simplification; \
print(*(p + ' ' + version(p) for p in ('torch', 'gsplat', 'trimesh', 'xatlas', 'PyMCubes', 'fast-simplification')))"
} > "$OUT/gpu.txt" 2>&1 || { cat "$OUT/gpu.txt"; echo "missing a package (xatlas?)"; exit 1; }

echo "== bundled-prior asset: a red cone"
python -m nfsd_gs.train --prompt "a red cone" --no-progress output.turntable=false \
  output.name=red_cone --output-root "$WORK/runs" "${TRAIN[@]}" >> "$LOG" 2>&1
CONE="$WORK/runs/red_cone/model.ply"
test -f "$CONE"

echo "# Mesh export, $DEVICE ($(sed -n 2p "$OUT/gpu.txt" | cut -d, -f1)), $(date -u +%F)" > "$OUT/summary.md"
for ASSET in red_cone synthetic; do
  echo "== mesh export: $ASSET, resolution ${RESOLUTIONS[*]}, texture 0 and $TEXTURE"
  if [ "$ASSET" = red_cone ]; then SOURCE=(--ply "$CONE"); else SOURCE=(--synthetic "$SYNTHETIC"); fi
  echo >> "$OUT/summary.md"
  python scripts/bench_mesh.py --device "$DEVICE" "${SOURCE[@]}" "${RES_ARGS[@]}" \
    --texture 0 --texture "$TEXTURE" "${BAKE[@]}" --out "$WORK/meshes" \
    --json "$OUT/mesh_$ASSET.json" >> "$OUT/summary.md" 2>> "$LOG"
done
cp "$WORK/meshes/red_cone_${RESOLUTIONS[-1]}_tex$TEXTURE.glb" "$OUT/red_cone_tex$TEXTURE.glb"

echo "== gpu mesh tests"
python -m pytest -q -m gpu tests/test_mesh.py -p no:cacheprovider >> "$LOG" 2>&1
tail -1 "$LOG" >> "$OUT/summary.md"
rm -rf "$WORK"
cat "$OUT/summary.md"
