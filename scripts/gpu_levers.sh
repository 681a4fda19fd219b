#!/usr/bin/env bash
# Issue 21's lever screening on one H200 in one 10-minute call: every lever variant of
# nfsd_gs/eval/variants.py (LEVER_VARIANTS, gs-base first) on a prompt subset holding the
# failures (cylinders) and one object of every other shape, seeds 0 and 1; then ONE table.
#
# Usage (on the device, from the repository root):
#   . .whl/gpu-env.sh && scripts/gpu_levers.sh OUT_DIR          (~90 s set-up + ~8 min)
#   DRY_RUN=1 scripts/gpu_levers.sh /tmp/levers_dry             (CPU, tiny sizes, < 60 s)
#
# Work split: one `python -m nfsd_gs.eval` process per (prompt, seed) pair, PARALLEL of
# them at a time sharing the GPU (the bundled U-Net is tiny; the steps are launch-bound,
# one process per CPU core). Each process trains every variant on its pair, prompt-major,
# the variant list rotated by the pair's index: a process stopped at the deadline loses
# different variants in different pairs, not always the last ones. All processes are
# stopped at EVAL_TIMEOUT seconds (SIGINT: each writes what it finished; SIGKILL 20 s
# later), so set-up + EVAL_TIMEOUT + merge fits one call of 600 s.
#
# Knobs (environment): LEVERS (comma list of variants; default LEVER_VARIANTS), PROMPTS
# (';'-separated), SEEDS ("0 1"), PARALLEL (16), EVAL_TIMEOUT (390 s), BASE (gs-base),
# LEVERS_WORK (the evaluations' folder, default OUT_DIR/work, removed once packed).
# Writes OUT_DIR/levers.md (the lever table, printed last), levers.json, results.md and
# results.json (every run, merged), levers.tgz (logs, per-process results, strips) and
# gpu.txt.
set -euo pipefail
. "$(dirname "$0")/common.sh"
OUT=${1:?output folder}
DRY=$DRY_RUN
E=${LEVERS_WORK:-$OUT/work}  # the evaluations' folder (emptied first; removed once packed)
rm -rf "$E"; mkdir -p "$OUT" "$E"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # this checkout's nfsd_gs, for scripts/ too
LEVERS=${LEVERS:-$(python -c 'from nfsd_gs.eval import LEVER_VARIANTS; print(",".join(LEVER_VARIANTS))')}
BASE=${BASE:-gs-base}
if [ "$DRY" = 1 ]; then
  PROMPTS=${PROMPTS:-a red cylinder;a blue cube}; SEEDS=${SEEDS:-0}; PARALLEL=${PARALLEL:-2}
  EVAL_TIMEOUT=${EVAL_TIMEOUT:-50}
  LEVERS=${DRY_LEVERS:-gs-base,gs-combo}  # gs-combo: the new terms and densify settings
  EXTRA=(--device cpu --steps 2 --views 2 --align-yaws 2 --align-scales 0.8,1.25,2
         camera.batch_size=1 init.num_points=100 densify.default.refine_start_iter=0
         densify.default.refine_every=1 densify.default.reset_every=1 densify.log_grad2d=true)
else
  PROMPTS=${PROMPTS:-a yellow cylinder;a purple cylinder;a red cylinder;a blue cube;a red cone;a green sphere;a purple torus;an orange pyramid}
  SEEDS=${SEEDS:-0 1}; PARALLEL=${PARALLEL:-16}; EVAL_TIMEOUT=${EVAL_TIMEOUT:-390}
  EXTRA=(--device cuda)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1 || true
fi
IFS=',' read -r -a VARIANTS <<< "$LEVERS"
IFS=';' read -r -a PROMPT_LIST <<< "$PROMPTS"
PAIRS=()
for seed in $SEEDS; do for prompt in "${PROMPT_LIST[@]}"; do PAIRS+=("$seed|$prompt"); done; done
END=$(( $(date +%s) + EVAL_TIMEOUT ))
echo "== ${#VARIANTS[@]} variants x ${#PAIRS[@]} (prompt, seed) pairs, $PARALLEL processes, stop at +${EVAL_TIMEOUT}s"

rotated() {  # K: the variants rotated left by K, comma separated
  local k=$(( $1 % ${#VARIANTS[@]} ))
  local list=("${VARIANTS[@]:$k}" "${VARIANTS[@]:0:$k}")
  (IFS=,; echo "${list[*]}")
}
worker() {  # W: pairs W, W+PARALLEL, ... one after another until the deadline
  local i left seed prompt
  for (( i = $1; i < ${#PAIRS[@]}; i += PARALLEL )); do
    left=$(( END - $(date +%s) ))
    [ "$left" -le 5 ] && break
    seed=${PAIRS[$i]%%|*}; prompt=${PAIRS[$i]#*|}
    # rc 124/137: stopped at the deadline (what it finished is written); not a failure here
    timeout -s INT -k 20 "$left" python -m nfsd_gs.eval --variants "$(rotated "$i")" \
      --prompts "$prompt" --seeds "$seed" --out "$E/pair$i" "${EXTRA[@]}" \
      > "$E/pair$i.log" 2>&1 || echo "pair $i ($prompt, seed $seed): eval rc=$?"
  done
}
pids=()
for (( w = 0; w < PARALLEL && w < ${#PAIRS[@]}; w++ )); do worker "$w" & pids+=($!); done
for pid in "${pids[@]}"; do wait "$pid"; done

grep -hE "Traceback|: error:" "$E"/pair*.log | sort | uniq -c | head -5 || true
python scripts/merge_eval.py "$E/merged" "$E"/pair*/ --levers "$BASE" > "$E/merge.log" 2>&1 \
  || { cat "$E/merge.log"; exit 1; }
cp "$E/merged/levers.md" "$E/merged/levers.json" "$E/merged/results.md" \
   "$E/merged/results.json" "$OUT/"
tar czf "$OUT/levers.tgz" --exclude='*/runs' --exclude='*/warmup' -C "$(dirname "$E")" "$(basename "$E")"
[ -z "${LEVERS_WORK:-}" ] && rm -rf "$E"
echo "== lever table ($(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["meta"]["status"])' "$OUT/results.json"))"
sed -n '/^| variant/,$p' "$OUT/levers.md"
