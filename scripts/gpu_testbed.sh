#!/usr/bin/env bash
# Issue 18 on one H100 in one call: the comparison (NFSD@7.5, SDS@7.5, SDS@100, NFSD without
# its negative term, NFSD@7.5 on the NeRF, and the tuned Gaussian candidates) on both splits,
# one process per (split, seed) sharing the GPU, then merged per split; the gpu tests beside.
#
# Usage (on the device, from the repository root, after `. .whl/gpu-env.sh`):
#   scripts/gpu_testbed.sh OUT_DIR
# Knobs (environment): PROMPTS_LIMIT (first N prompts of each split's set, default 4),
# SEEDS ("0 1 2"), EVAL_TIMEOUT (seconds per process, default 400; SIGINT keeps what finished),
# TWO_TONE_PRIOR (prior.model for the two-tone split and a solid-split check of it; default:
# the bundled prior), TESTS (gpu test files), DEVICE and STEPS (a CPU dry run:
# DEVICE=cpu STEPS=2 PROMPTS_LIMIT=1 SEEDS=0 scripts/gpu_testbed.sh /tmp/dry).
set -u
OUT=${1:?output folder}
LIMIT=${PROMPTS_LIMIT:-4}; SEEDS=${SEEDS:-0 1 2}; T=${EVAL_TIMEOUT:-400}
NEW_PRIOR=${TWO_TONE_PRIOR:-}
TESTS=${TESTS:-tests/test_render.py tests/test_gpu_step.py tests/test_mesh.py tests/test_vsd.py}
E=outputs/testbed
mkdir -p "$OUT" "$E"
VARIANTS=nfsd@7.5,sds@7.5,sds@100,nfsd-no-neg@7.5,nerf
TUNED="init.color=[0.5,0.5,0.5],gaussians.opacities_lr=0.01,densify.default.prune_opa=0.05,guidance.t_max_end=0.3"
CANDIDATES=(--variant "tuned=$TUNED" --variant "tuned-b8=$TUNED,camera.batch_size=8,render.eps2d=0.1")
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$E/gpu.txt" 2>&1

timeout 300 python -m pytest -q -m gpu $TESTS -p no:cacheprovider > "$E/gpu_tests.txt" 2>&1 &
tests_pid=$!
pids=()
evaluate() {  # NAME ARGS...: one evaluation process in the background
  local name=$1; shift
  timeout -s INT -k 30 "$T" python -m nfsd_gs.eval --device "${DEVICE:-cuda}" --limit "$LIMIT" \
    ${STEPS:+--steps "$STEPS"} --out "$E/$name" "$@" > "$E/$name.log" 2>&1 &
  pids+=($!)
}
for seed in $SEEDS; do
  evaluate "solid_s$seed" --split solid --seeds "$seed" --variants "$VARIANTS" "${CANDIDATES[@]}"
  two_tone=(--split two-tone --seeds "$seed" --variants "$VARIANTS" "${CANDIDATES[@]}")
  [ -n "$NEW_PRIOR" ] && two_tone+=("prior.model=$NEW_PRIOR" prior.local_files_only=true)
  evaluate "two-tone_s$seed" "${two_tone[@]}"
done
[ -n "$NEW_PRIOR" ] && evaluate solid_newprior --split solid --seeds 0 --variants nfsd@7.5 \
  "${CANDIDATES[@]:0:2}" "prior.model=$NEW_PRIOR" prior.local_files_only=true
for pid in "${pids[@]}"; do wait "$pid"; done
wait "$tests_pid"; echo "gpu tests: $(tail -1 "$E/gpu_tests.txt")"

for split in solid two-tone; do
  python scripts/merge_eval.py "$E/$split" "$E/${split}"_s* > "$E/merge_$split.log" 2>&1
  cp "$E/$split/results.md" "$OUT/${split}_results.md"; cp "$E/$split/results.json" "$OUT/${split}_results.json"
done
tar czf "$OUT/testbed.tgz" -C outputs testbed --exclude='*/runs/*/checkpoints' --exclude='*/warmup'
cp "$E/gpu_tests.txt" "$OUT/"
for split in solid two-tone; do
  echo "== $split"; sed -n '/^## Per variant/,/^## Per /p' "$OUT/${split}_results.md" | grep '^|' | cut -c1-400
done
[ -f "$E/solid_newprior/results.md" ] && { echo "== solid, new prior"; sed -n '/^## Per variant/,/^## Per /p' "$E/solid_newprior/results.md" | grep '^|' | cut -c1-400; }
