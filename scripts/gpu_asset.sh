#!/usr/bin/env bash
# Issue 17: one SD-sized asset end to end (start-up, 1,200-step loop, outputs, floor) with the
# SD VAE (weights on local disk: a saved random SD-2.1-base folder) and with TAESD.
# Usage (on the device, after `. .whl/gpu-env.sh`): scripts/gpu_asset.sh OUT_DIR
set -u
OUT=${1:?output folder}; mkdir -p "$OUT"
python -m nfsd_gs.bench --save-prior /tmp/sd21 --prior random:sd21-base > "$OUT/save.log" 2>&1
for encoder in vae taesd; do
  prior=/tmp/sd21; [ "$encoder" = taesd ] && prior=random:sd21-base
  timeout 240 python -m nfsd_gs.bench --asset --prior "$prior" --encoder "$encoder" \
    --json "$OUT/asset_$encoder.json" prior.local_files_only=true > "$OUT/asset_$encoder.md" 2> "$OUT/asset_$encoder.log"
  echo "$encoder rc=$?"; cat "$OUT/asset_$encoder.md"
done
