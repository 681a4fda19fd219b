#!/usr/bin/env bash
# VSD vs NFSD vs SDS on one H100 (issue 16), about 5 minutes:
#   1. the gpu-marked VSD test (fp16 prior as a CUDA graph + fp32 LoRA on the same U-Net);
#   2. ms/step and peak memory at 512x512 x 4 views, 100k Gaussians, random:sd21-base
#      (nfsd_gs.bench, one process, the three methods one after another);
#   3. the bundled-prior evaluation, 12 prompts, seed 0: nfsd@7.5, vsd@7.5 and sds@100,
#      four processes side by side (vsd split in two), merged into one table.
# Usage (on the device, after `. .whl/gpu-env.sh`, whose .whl/ must hold the peft wheel and
# its accelerate/psutil dependencies): scripts/gpu_vsd.sh OUT_DIR
# OUT_DIR gets: summary.md, bench.md, bench.json, eval.md, eval.json, logs.tar.gz.
# DRY_RUN=1: the script's logic on the CPU (tiny sizes; the gpu test only collected; the
# NFSD evaluation and one VSD half, one prompt each). BENCH_EXTRA and EVAL_EXTRA are
# appended to the bench's and the evaluations' arguments (the last wins).
set -euo pipefail
. "$(dirname "$0")/common.sh"
BENCH_EXTRA=(${BENCH_EXTRA:-}); EVAL_EXTRA=(${EVAL_EXTRA:-}); COLLECT=(); PROMPTS_PER_HALF=6
if [ "$DRY_RUN" = 1 ]; then
  BENCH_EXTRA=(--prior random:tiny --resolution 32 --views 1 --gaussians 100 --methods vsd
               --steps 1 --warmup 1 --timed-steps 1 --floor-repeats 1 "${BENCH_EXTRA[@]}")
  EVAL_EXTRA=(--steps 1 --no-warmup --device cpu --align-yaws 8 --align-scales 0.65,1.3,3
              camera.batch_size=1 init.num_points=50 "${EVAL_EXTRA[@]}")
  COLLECT=(--collect-only); PROMPTS_PER_HALF=1
fi
OUT=${1:?output folder}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/gpu_vsd.XXXX)
LOGS="$WORK/logs"; mkdir -p "$LOGS"
finish() {  # whatever ran, its results come back
  set +e  # a part that wrote nothing leaves its line empty
  tar -czf "$OUT/logs.tar.gz" -C "$WORK" logs eval 2>/dev/null
  {
    echo "# gpu_vsd summary"; echo; cat "$LOGS/gpu.txt" 2>/dev/null; echo
    echo "## gpu test"; tail -3 "$LOGS/gpu_test.txt" 2>/dev/null; echo
    echo "## bench (ms/step, peak GiB)"; cat "$OUT/bench.md" 2>/dev/null; echo
    echo "## evaluation (bundled prior, 12 prompts)"; cat "$LOGS/eval_summary.md" 2>/dev/null
  } > "$OUT/summary.md"
  echo; cat "$OUT/summary.md"
}
trap finish EXIT

device_info > "$LOGS/gpu.txt"
python -c "import torch, diffusers, transformers, peft, gsplat; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'gsplat', gsplat.__version__)" >> "$LOGS/gpu.txt" 2>&1 \
  || { echo "peft (or another library) is missing: put its wheel in .whl/"; exit 1; }

echo "== gpu test"; date
tolerate timeout 90 python -m pytest -q -m gpu "${COLLECT[@]}" tests/test_vsd.py -p no:cacheprovider \
  > "$LOGS/gpu_test.txt" 2>&1
tail -2 "$LOGS/gpu_test.txt"

echo "== bench: nfsd sds vsd, 512x512, 4 views, 100k Gaussians, random:sd21-base"; date
tolerate timeout 150 python -m nfsd_gs.bench --views 4 --gaussians 100000 --methods nfsd sds vsd \
  --json "$OUT/bench.json" "${BENCH_EXTRA[@]}" > "$OUT/bench.md" 2> "$LOGS/bench.log"
echo "bench rc=$rc"; cat "$OUT/bench.md"

echo "== evaluation: bundled prior, 12 prompts, nfsd@7.5 | vsd@7.5 (2 halves) | sds@100"; date
VSD='vsd@7.5=guidance.method=vsd,guidance.cfg_scale=7.5'
PROMPTS=$(python -c "from nfsd_gs.eval import split_prompts; print(','.join(split_prompts('solid')))")
FIRST=$(echo "$PROMPTS" | cut -d, -f1-$PROMPTS_PER_HALF)
SECOND=$(echo "$PROMPTS" | cut -d, -f$((PROMPTS_PER_HALF + 1))-$((2 * PROMPTS_PER_HALF)))
run_eval() {  # name, eval arguments...
  local name=$1; shift
  timeout 200 python -m nfsd_gs.eval --out "$WORK/eval/$name" "$@" "${EVAL_EXTRA[@]}" \
    > "$LOGS/eval_$name.txt" 2>&1
}
pids=(); names=()
if [ "$DRY_RUN" = 1 ]; then  # one prompt of NFSD and of the first VSD half
  run_eval nfsd --variants nfsd@7.5 --prompts "$FIRST" & pids+=($!); names+=(nfsd)
  run_eval vsd_a --variants none --variant "$VSD" --prompts "$FIRST" & pids+=($!); names+=(vsd_a)
else
  run_eval nfsd --variants nfsd@7.5 & pids+=($!); names+=(nfsd)
  run_eval vsd_a --variants none --variant "$VSD" --prompts "$FIRST" & pids+=($!); names+=(vsd_a)
  run_eval vsd_b --variants none --variant "$VSD" --prompts "$SECOND" & pids+=($!); names+=(vsd_b)
  run_eval sds --variants sds@100 & pids+=($!); names+=(sds)
fi
for i in "${!pids[@]}"; do
  tolerate wait "${pids[$i]}"; echo "eval ${names[$i]} rc=$rc" >> "$LOGS/eval_rc.txt"
done
cat "$LOGS/eval_rc.txt"
sources=$(for d in nfsd vsd_a vsd_b sds; do if [ -f "$WORK/eval/$d/results.json" ]; then echo "$WORK/eval/$d"; fi; done)
if [ -n "$sources" ]; then
  tolerate python scripts/merge_eval.py "$WORK/eval/merged" $sources > "$LOGS/eval_summary.md" 2>> "$LOGS/eval_rc.txt"
  cp "$WORK/eval/merged/results.md" "$OUT/eval.md"; cp "$WORK/eval/merged/results.json" "$OUT/eval.json"
fi
date
