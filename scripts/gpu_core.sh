#!/usr/bin/env bash
# GPU validation of the core pipeline (issues 2, 4, 7): the gpu-marked tests, a
# 200-step run on the random SD-2.1-base-shaped prior, and the step benchmark.
# Usage (on the device, after `. .whl/gpu-env.sh`): scripts/gpu_core.sh OUT_DIR
set -u
OUT=${1:?output folder}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
python -c "import torch, diffusers, transformers, gsplat; print(torch.__version__, diffusers.__version__, transformers.__version__, gsplat.__version__)" >> "$OUT/gpu.txt" 2>&1

echo "== gpu tests"; date
timeout 240 python -m pytest -q -m gpu tests/test_render.py tests/test_gpu_step.py -p no:cacheprovider > "$OUT/gpu_tests.txt" 2>&1
tail -5 "$OUT/gpu_tests.txt"

echo "== 200-step run, random sd21-base, 512x512, 4 views"; date
python -m nfsd_gs.train --config nfsd_gs --prompt "a DSLR photo of a corgi" \
  prior.model=random:sd21-base steps=200 output.turntable=false output.name=sd21_200 \
  --no-progress --output-root /tmp/runs > "$OUT/run200.txt" 2>&1
tail -3 "$OUT/run200.txt"; cp /tmp/runs/sd21_200/metrics.jsonl "$OUT/run200_metrics.jsonl"

echo "== bench"; date
timeout 170 python -m nfsd_gs.bench --steps 10 --json "$OUT/bench.json" > "$OUT/bench.md" 2> "$OUT/bench.log"
cat "$OUT/bench.md"

echo "== time to asset: 1200 steps, 4 views, 512x512, NFSD, SD VAE then TAESD"; date
for encoder in vae taesd; do
  start=$(date +%s.%N)
  timeout 170 python -m nfsd_gs.train --config nfsd_gs --prompt "a DSLR photo of a corgi" \
    prior.model=random:sd21-base prior.encoder=$encoder output.name=asset_$encoder \
    --no-progress --output-root /tmp/runs > "$OUT/asset_$encoder.txt" 2>&1
  echo "$encoder rc=$? wall_s=$(python -c "import sys; print(round($(date +%s.%N) - $start, 1))")" | tee -a "$OUT/asset.txt"
  tail -1 /tmp/runs/asset_$encoder/metrics.jsonl >> "$OUT/asset.txt"
done
