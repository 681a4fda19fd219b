#!/usr/bin/env bash
# VSD at a fair price (issue 26) on one H200, in ONE call of at most ten minutes:
#   1. the lever table: ms/step, of which the LoRA's, and peak memory at 512x512 x 4 views,
#      100k Gaussians, random:sd21-base (nfsd_gs.bench, one process): NFSD, SDS (the
#      baseline), VSD as it was (eager LoRA on every view) and with each lever
#      (guidance.vsd.*: cuda_graph, views, autocast), each against SDS;
#   2. the bundled-prior evaluation, 12 prompts x 3 seeds: NFSD@7.5, SDS@7.5 and the VSD
#      variants, PARALLEL processes sharing the GPU (each one seed and a share of the prompts,
#      every variant, prompt by prompt), hard-stopped at the deadline (SIGINT: each keeps what
#      it finished), merged into one table;
#   3. the gpu-marked VSD tests (graphed vs eager eps_phi and gradients), beside 2.
# Usage (on the device, from the repository root): scripts/gpu_vsd.sh OUT_DIR
# OUT_DIR gets: summary.md (printed last), bench.json, bench.md, eval.json, eval.md,
# gpu_tests.txt, logs.tar.gz (logs, strips; not the runs' models).
# Knobs (environment): BUDGET (seconds for the whole script, default 560), BENCH_TIMEOUT
# (170), VARIANTS (the evaluation's named variants, comma separated), SEEDS ("0 1 2"),
# PARALLEL (12 evaluation processes), STEPS (the runs' steps; default: the preset's),
# BENCH_EXTRA and EVAL_EXTRA (appended to the bench's and the evaluations' arguments).
# DRY_RUN=1: the logic on the CPU (tiny prior and sizes, three bench rows, two evaluation
# processes of one prompt each, NFSD and VSD, one step; the gpu tests only collected).
set -euo pipefail
. "$(dirname "$0")/common.sh"
START=$SECONDS
BUDGET=${BUDGET:-560}; BENCH_TIMEOUT=${BENCH_TIMEOUT:-170}
VARIANTS=${VARIANTS:-nfsd@7.5,sds@7.5,vsd@7.5,vsd-lorat0.98@7.5,vsd-pd@7.5,vsd-1view@7.5}
SEEDS=${SEEDS:-0 1 2}; PARALLEL=${PARALLEL:-12}; LIMIT=""
BENCH_EXTRA=(${BENCH_EXTRA:-}); EVAL_EXTRA=(${EVAL_EXTRA:-}); COLLECT=()
VSD=guidance.method=vsd
LEVERS=(  # NAME=overrides: one bench row each, beside --methods nfsd sds; first what matters most
  "vsd-before=$VSD,guidance.vsd.cuda_graph=false"
  "vsd-1view-graph=$VSD,guidance.vsd.views=1,guidance.vsd.cuda_graph=true"
  "vsd-graph=$VSD,guidance.vsd.cuda_graph=true"
  "vsd-1view-graph-fp16=$VSD,guidance.vsd.views=1,guidance.vsd.cuda_graph=true,guidance.vsd.autocast=true"
  "vsd-graph-fp16=$VSD,guidance.vsd.cuda_graph=true,guidance.vsd.autocast=true"
  "vsd-2views-graph=$VSD,guidance.vsd.views=2,guidance.vsd.cuda_graph=true"
  "vsd-1view-eager=$VSD,guidance.vsd.views=1,guidance.vsd.cuda_graph=false"
)
BENCH=(--views 4 --gaussians 100000 --methods nfsd sds --baseline sds
       --steps 12 --warmup 4 --timed-steps 4 --floor-repeats 5)
if [ "$DRY_RUN" = 1 ]; then
  LEVERS=("${LEVERS[0]}" "${LEVERS[1]}")
  BENCH=(--prior random:tiny --resolution 32 --views 2 --gaussians 100 --methods sds
         --baseline sds --steps 1 --warmup 1 --timed-steps 1 --floor-repeats 1)
  EVAL_EXTRA=(--steps 1 --no-warmup --device cpu --align-yaws 8 --align-scales 0.65,1.3,3
              camera.batch_size=1 init.num_points=50 "${EVAL_EXTRA[@]}")
  VARIANTS=nfsd@7.5,vsd@7.5; SEEDS=0; PARALLEL=2; LIMIT=2; COLLECT=(--collect-only)
fi
if [ -n "${STEPS:-}" ]; then EVAL_EXTRA=(--steps "$STEPS" "${EVAL_EXTRA[@]}"); fi
OUT=${1:?output folder}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/gpu_vsd.XXXX)
LOGS="$WORK/logs"; mkdir -p "$LOGS" "$WORK/eval"
left() { echo $((BUDGET - (SECONDS - START))); }
finish() {  # whatever ran, its results come back
  set +e  # a part that wrote nothing leaves its line empty
  tar -czf "$OUT/logs.tar.gz" -C "$WORK" --exclude='runs' --exclude='warmup' logs eval 2>/dev/null
  cp "$LOGS/gpu_tests.txt" "$OUT/" 2>/dev/null
  {
    echo "# gpu_vsd summary ($(date '+%Y-%m-%d %H:%M'), $((SECONDS - START)) s)"; echo
    cat "$LOGS/gpu.txt" 2>/dev/null; echo
    echo "## gpu tests"; tail -3 "$LOGS/gpu_tests.txt" 2>/dev/null; echo
    echo "## levers: 512x512, 4 views, 100k Gaussians, random:sd21-base (vs SDS: step / SDS step)"
    sed -n '/^| variant | views | step ms/,$p' "$OUT/bench.md" 2>/dev/null; echo
    echo "## evaluation: bundled prior, 12 prompts x seeds ($VARIANTS)"
    cat "$LOGS/eval_rc.txt" 2>/dev/null
    cat "$LOGS/eval_summary.md" 2>/dev/null
  } > "$OUT/summary.md"
  echo; cat "$OUT/summary.md"
}
trap finish EXIT

device_info > "$LOGS/gpu.txt"
python -c "import torch, diffusers, transformers, peft, gsplat; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'gsplat', gsplat.__version__)" >> "$LOGS/gpu.txt" 2>&1 \
  || { echo "peft (or another library) is missing: put its wheel in .whl/"; exit 1; }

echo "== bench: nfsd sds and the VSD levers ($(left) s left)"
variants=(); for lever in "${LEVERS[@]}"; do variants+=(--variant "$lever"); done
tolerate timeout -k 10 "$BENCH_TIMEOUT" python -m nfsd_gs.bench "${BENCH[@]}" "${variants[@]}" \
  --json "$OUT/bench.json" "${BENCH_EXTRA[@]}" > "$OUT/bench.md" 2> "$LOGS/bench.log"
echo "bench rc=$rc"; sed -n '/^| variant | views | step ms/,$p' "$OUT/bench.md"

echo "== evaluation + gpu tests ($(left) s left)"
timeout -k 10 150 python -m pytest -q -m gpu "${COLLECT[@]}" tests/test_vsd.py -p no:cacheprovider \
  > "$LOGS/gpu_tests.txt" 2>&1 &
tests_pid=$!
read -r -a seeds <<< "$SEEDS"
PER_SEED=$(( (PARALLEL + ${#seeds[@]} - 1) / ${#seeds[@]} ))  # processes per seed
mapfile -t SHARES < <(python - "$PER_SEED" "$LIMIT" <<'PY'
import sys
from nfsd_gs.eval import split_prompts
parts, limit = int(sys.argv[1]), sys.argv[2]
prompts = split_prompts("solid")[:int(limit)] if limit else split_prompts("solid")
for k in range(min(parts, len(prompts))):
    print(",".join(prompts[k::parts]))
PY
)
STOP=$(( $(left) - 45 ))  # the merge and the tables after it
[ "$STOP" -lt 30 ] && STOP=30
pids=(); names=()
for seed in "${seeds[@]}"; do
  for k in "${!SHARES[@]}"; do
    name="s${seed}_p$k"
    OMP_NUM_THREADS=1 timeout -s INT -k 20 "$STOP" python -m nfsd_gs.eval --variants "$VARIANTS" \
      --prompts "${SHARES[$k]}" --seeds "$seed" --out "$WORK/eval/$name" "${EVAL_EXTRA[@]}" \
      > "$LOGS/eval_$name.txt" 2>&1 &
    pids+=($!); names+=("$name")
  done
done
for i in "${!pids[@]}"; do  # 130: stopped at the deadline, with what it finished
  tolerate_codes=0; wait "${pids[$i]}" || tolerate_codes=$?
  echo "eval ${names[$i]} rc=$tolerate_codes" >> "$LOGS/eval_rc.txt"
  if [ "$DRY_RUN" = 1 ] && [ "$tolerate_codes" != 0 ]; then
    cat "$LOGS/eval_${names[$i]}.txt" >&2; exit "$tolerate_codes"
  fi
done
tolerate wait "$tests_pid"; echo "gpu tests rc=$rc: $(tail -1 "$LOGS/gpu_tests.txt")"
sources=$(for d in "$WORK"/eval/s*_p*; do [ -f "$d/results.json" ] && echo "$d"; done || true)
if [ -n "$sources" ]; then
  tolerate python scripts/merge_eval.py "$WORK/eval/merged" $sources > "$LOGS/eval_summary.md" \
    2>> "$LOGS/eval_rc.txt"
  cp "$WORK/eval/merged/results.md" "$OUT/eval.md"; cp "$WORK/eval/merged/results.json" "$OUT/eval.json"
fi
