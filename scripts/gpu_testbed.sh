#!/usr/bin/env bash
# Issue 18 on one H100 in one call: the comparison (NFSD@7.5, SDS@7.5, SDS@100, NFSD without
# its negative term, NFSD@7.5 on the NeRF, and the tuned Gaussian candidates) on both splits,
# one process per (split, seed) sharing the GPU, then merged per split; the gpu tests beside.
#
# Usage (on the device, from the repository root, after `. .whl/gpu-env.sh`):
#   scripts/gpu_testbed.sh OUT_DIR
# Knobs (environment): EVAL_GROUPS, SPLITS, CANDIDATES (below), PROMPTS_LIMIT (first N prompts of each split's set, default 4),
# SEEDS ("0 1 2"), EVAL_TIMEOUT (seconds per process, default 400; SIGINT keeps what finished),
# ASSETS (runs each process trains at once, one U-Net call a step: --assets-per-process),
# TWO_TONE_PRIOR (prior.model for the two-tone split and a solid-split check of it; default:
# the bundled prior), TESTS (gpu test files), DEVICE and STEPS (a CPU dry run:
# DEVICE=cpu STEPS=2 PROMPTS_LIMIT=1 SEEDS=0 scripts/gpu_testbed.sh /tmp/dry), WORST (default
# 3; 0: none) and WORST_BY (default all_acc): each split's sheet of every variant's WORST
# worst runs (scripts/merge_eval.py --worst).
# Writes OUT_DIR/<split>_results.md, <split>_results.json and <split>_worst.png per split,
# testbed.tgz (the evaluation folders without their runs: strips, logs, each split's
# worst.md beside its worst.png) and gpu_tests.txt: 8 files for the two splits, the most a
# GPU call brings back.
# DRY_RUN=1 does that with the smallest sizes: the solid split, seed 0, NFSD on one prompt,
# 1 step, a small alignment grid, the gpu tests only collected, in OUT_DIR/testbed.
set -euo pipefail
. "$(dirname "$0")/common.sh"
OUT=${1:?output folder}
LIMIT=${PROMPTS_LIMIT:-4}; SEEDS=${SEEDS:-0 1 2}; T=${EVAL_TIMEOUT:-400}
NEW_PRIOR=${TWO_TONE_PRIOR:-}
TESTS=${TESTS-tests/test_render.py tests/test_gpu_step.py tests/test_mesh.py tests/test_vsd.py}
E=outputs/testbed
WORST=${WORST:-3}
EXTRA=(); COLLECT=()
if [ "$DRY_RUN" = 1 ]; then
  E=$OUT/testbed; LIMIT=1; SEEDS=0; SPLITS=solid; EVAL_GROUPS="nfsd@7.5:1:2"; DEVICE=cpu; STEPS=1; ASSETS=1
  TESTS="tests/test_gpu_step.py"; COLLECT=(--collect-only)
  EXTRA=(--no-warmup --align-yaws 8 --align-scales 0.65,1.3,3 camera.batch_size=1 init.num_points=50)
fi
mkdir -p "$OUT" "$E"
# EVAL_GROUPS: "VARIANTS:PROMPTS_LIMIT[:ASSETS] ..." (default: the whole comparison on
# PROMPTS_LIMIT prompts); a group's ASSETS overrides the global one (the NeRF, heavier a run,
# is best trained a few at a time: "nerf:12:2")
EVAL_GROUPS=${EVAL_GROUPS:-nfsd@7.5,sds@7.5,sds@100,nfsd-no-neg@7.5,nerf:$LIMIT}
SPLITS=${SPLITS:-solid two-tone}
# CANDIDATES: extra --variant NAME=K=V,... specs run with the first group (space separated)
read -r -a CANDIDATE_SPECS <<< "${CANDIDATES:-}"
CANDIDATES=(); for spec in "${CANDIDATE_SPECS[@]}"; do CANDIDATES+=(--variant "$spec"); done
device_info > "$E/gpu.txt"
share_cores $(( $(wc -w <<< "$SEEDS") * $(wc -w <<< "$SPLITS") * $(wc -w <<< "$EVAL_GROUPS") ))

: > "$E/gpu_tests.txt"
tests_pid=""
if [ -n "$TESTS" ]; then
  timeout 300 python -m pytest -q -m gpu "${COLLECT[@]}" $TESTS -p no:cacheprovider > "$E/gpu_tests.txt" 2>&1 &
  tests_pid=$!
fi
pids=()
evaluate() {  # NAME ARGS...: one evaluation process in the background
  local name=$1; shift
  timeout -s INT -k 30 "$T" python -m nfsd_gs.eval --device "${DEVICE:-cuda}" --limit "${LIMIT}" \
    ${STEPS:+--steps "$STEPS"} ${ASSETS:+--assets-per-process "$ASSETS"} --out "$E/$name" "${EXTRA[@]}" "$@" > "$E/$name.log" 2>&1 &
  pids+=($!)
}
for seed in $SEEDS; do
  for split in $SPLITS; do
    prior=()
    [ "$split" = two-tone ] && [ -n "$NEW_PRIOR" ] && prior=("prior.model=$NEW_PRIOR" prior.local_files_only=true)
    g=0
    for group in $EVAL_GROUPS; do  # VARIANTS:PROMPTS_LIMIT[:ASSETS], one process each
      IFS=: read -r variants limit assets <<< "$group"
      g=$((g + 1))
      candidates=(); [ "$g" = 1 ] && candidates=("${CANDIDATES[@]}")
      LIMIT=${limit:-$LIMIT} ASSETS=${assets:-${ASSETS:-}} evaluate "${split}_s${seed}_g$g" \
        --split "$split" --seeds "$seed" \
        --variants "$variants" "${candidates[@]}" "${prior[@]}"
    done
  done
done
if [ -n "$NEW_PRIOR" ]; then
  evaluate solid_newprior --split solid --seeds 0 --variants nfsd@7.5 \
    "prior.model=$NEW_PRIOR" prior.local_files_only=true
fi
for pid in "${pids[@]}"; do tolerate wait "$pid"; done
if [ -n "$tests_pid" ]; then tolerate wait "$tests_pid"; fi
echo "gpu tests: $(tail -1 "$E/gpu_tests.txt")"

for split in $SPLITS; do
  rm -f "$E/$split/worst.png" "$E/$split/worst.md"  # an earlier call's, on a warm machine
  tolerate python scripts/merge_eval.py "$E/$split" "$E/${split}"_s*/ --worst "$WORST" \
    --worst-by "${WORST_BY:-all_acc}" > "$E/merge_$split.log" 2>&1
  cp "$E/$split/results.md" "$OUT/${split}_results.md" || echo "no $split results"
  cp "$E/$split/results.json" "$OUT/${split}_results.json" || true
  if [ "$WORST" != 0 ]; then cp "$E/$split/worst.png" "$OUT/${split}_worst.png" || true; fi
done
tar czf "$OUT/testbed.tgz" --exclude='*/runs' --exclude='*/warmup' -C "$(dirname "$E")" "$(basename "$E")"
cp "$E/gpu_tests.txt" "$OUT/"
for split in $SPLITS; do
  echo "== $split"
  sed -n '/^## Per variant/,/^## Per /p' "$OUT/${split}_results.md" | grep '^|' | cut -c1-400 || true
done
if [ -f "$E/solid_newprior/results.md" ]; then
  echo "== solid, new prior"
  sed -n '/^## Per variant/,/^## Per /p' "$E/solid_newprior/results.md" | grep '^|' | cut -c1-400 || true
fi
