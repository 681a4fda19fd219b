#!/usr/bin/env bash
# GPU validation of the core pipeline (issues 2, 4, 7): the gpu-marked tests, a
# 200-step run on the random SD-2.1-base-shaped prior, and the step benchmark.
# Usage (on the device, after `. .whl/gpu-env.sh`): scripts/gpu_core.sh OUT_DIR
# DRY_RUN=1: the same on the CPU with random:tiny-latent, 2 steps, 32x32, one encoder.
set -euo pipefail
. "$(dirname "$0")/common.sh"
OUT=${1:?output folder}
mkdir -p "$OUT"
RUNS=$(mktemp -d /tmp/gpu_core.XXXX)
PRIOR=random:sd21-base; STEPS=200; ENCODERS="vae taesd"; SIZE=(); BENCH=(--steps 10); TESTS=()
if [ "$DRY_RUN" = 1 ]; then
  PRIOR=random:tiny-latent; STEPS=2; ENCODERS=vae
  SIZE=(camera.resolution=32 camera.batch_size=1 init.num_points=50 steps=2 output.turntable=false)
  TESTS=(--collect-only)  # the gpu tests only skip on a CPU: see that they still import
  BENCH=(--prior random:tiny --resolution 32 --views 1 --gaussians 100 --methods nfsd
         --steps 1 --warmup 1 --timed-steps 1 --floor-repeats 1)
fi
device_info > "$OUT/gpu.txt"
python -c "import torch, diffusers, transformers, gsplat; print(torch.__version__, diffusers.__version__, transformers.__version__, gsplat.__version__)" >> "$OUT/gpu.txt" 2>&1

echo "== gpu tests"; date
tolerate timeout 240 python -m pytest -q -m gpu "${TESTS[@]}" tests/test_render.py tests/test_gpu_step.py \
  -p no:cacheprovider > "$OUT/gpu_tests.txt" 2>&1
tail -5 "$OUT/gpu_tests.txt"

echo "== $STEPS-step run, $PRIOR, 4 views"; date
tolerate python -m nfsd_gs.train --config nfsd_gs --prompt "a DSLR photo of a corgi" \
  prior.model=$PRIOR steps=$STEPS output.turntable=false output.name=sd21_200 "${SIZE[@]}" \
  --no-progress --output-root "$RUNS" > "$OUT/run200.txt" 2>&1
tail -3 "$OUT/run200.txt"
cp "$RUNS/sd21_200/metrics.jsonl" "$OUT/run200_metrics.jsonl" || echo "the run wrote no metrics"

echo "== bench"; date
tolerate timeout 170 python -m nfsd_gs.bench "${BENCH[@]}" --json "$OUT/bench.json" > "$OUT/bench.md" 2> "$OUT/bench.log"
cat "$OUT/bench.md"

echo "== time to asset: 1200 steps, 4 views, 512x512, NFSD, SD VAE then TAESD"; date
for encoder in $ENCODERS; do
  start=$(date +%s.%N)
  tolerate timeout 170 python -m nfsd_gs.train --config nfsd_gs --prompt "a DSLR photo of a corgi" \
    prior.model=$PRIOR prior.encoder=$encoder output.name=asset_$encoder "${SIZE[@]}" \
    --no-progress --output-root "$RUNS" > "$OUT/asset_$encoder.txt" 2>&1
  echo "$encoder rc=$rc wall_s=$(python -c "import sys; print(round($(date +%s.%N) - $start, 1))")" | tee -a "$OUT/asset.txt"
  tail -1 "$RUNS/asset_$encoder/metrics.jsonl" >> "$OUT/asset.txt" || echo "no metrics"
done
rm -rf "$RUNS"
