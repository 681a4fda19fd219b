#!/usr/bin/env bash
# Issue 17: one SD-sized asset end to end (start-up, 1,200-step loop, outputs, floor) with the
# SD VAE (weights on local disk: a saved random SD-2.1-base folder) and with TAESD.
# Usage (on the device, after `. .whl/gpu-env.sh`): scripts/gpu_asset.sh OUT_DIR
# DRY_RUN=1: the same logic on the CPU (random:tiny-latent, 2 steps, the VAE only).
set -euo pipefail
. "$(dirname "$0")/common.sh"
OUT=${1:?output folder}; mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/gpu_asset.XXXX)
PRIOR=random:sd21-base; ENCODERS="vae taesd"; ARGS=()
if [ "$DRY_RUN" = 1 ]; then
  PRIOR=random:tiny-latent; ENCODERS=vae
  ARGS=(--config tiny_test --asset-steps 2 --floor-repeats 1 camera.batch_size=1 init.num_points=50)
fi
python -m nfsd_gs.bench --save-prior "$WORK/prior" --prior "$PRIOR" > "$OUT/save.log" 2>&1
for encoder in $ENCODERS; do
  prior=$WORK/prior; [ "$encoder" = taesd ] && prior=$PRIOR
  tolerate timeout 240 python -m nfsd_gs.bench --asset --prior "$prior" --encoder "$encoder" \
    --json "$OUT/asset_$encoder.json" "${ARGS[@]}" prior.local_files_only=true \
    > "$OUT/asset_$encoder.md" 2> "$OUT/asset_$encoder.log"
  echo "$encoder rc=$rc"; cat "$OUT/asset_$encoder.md"
done
rm -rf "$WORK"
