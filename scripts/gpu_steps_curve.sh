#!/usr/bin/env bash
# Issue 25: the steps-to-quality curve of the bundled prior. The default preset (400 steps)
# and the same preset at fewer steps (the schedules, t_max's annealing included, scale with
# the run), on every prompt of the solid split's evaluation set x seeds, judged and scored
# as `python -m nfsd_gs.eval` does; then the fewest steps whose judged score lies within the
# seed spread of 400 steps' (a candidate for a faster preset; the SD targets stay at 1,200).
#
# Usage (on the device): . .whl/gpu-env.sh && scripts/gpu_steps_curve.sh OUT_DIR
# Knobs (environment): STEPS_LIST (default "100 200 300 400"; the largest is the reference),
# SEEDS (default 0,1,2), PROMPTS_LIMIT (default empty: all 12), PARALLEL (default 3),
# EVAL_TIMEOUT (seconds, default 480). It runs scripts/gpu_eval.sh with those variants in
# outputs/gpu_steps_curve (kept on a warm machine: calling again trains only what is missing).
# Writes OUT_DIR/results.json, results.md, eval.log, strips.tgz, worst.png, worst.md
# (gpu_eval.sh's), gpu_eval.out and curve.md: the 8 files a GPU call brings back; prints the
# curve last.
# DRY_RUN=1: the logic on the CPU: steps 1 and 2, two prompts, seed 0 (gpu_eval.sh's dry run).
set -euo pipefail
. "$(dirname "$0")/common.sh"
OUT=${1:?output folder}
mkdir -p "$OUT"
STEPS_LIST=${STEPS_LIST:-100 200 300 400}
EVAL_DIR=outputs/gpu_steps_curve
if [ "$DRY_RUN" = 1 ]; then STEPS_LIST="1 2"; EVAL_DIR=$OUT/eval; fi
SPECS=""
for steps in $STEPS_LIST; do SPECS+="steps$steps=steps=$steps "; done
VARIANTS= VARIANT_SPECS=$SPECS EVAL_DIR=$EVAL_DIR PROMPTS_LIMIT=${PROMPTS_LIMIT-} PARALLEL=${PARALLEL:-3} \
  EVAL_TIMEOUT=${EVAL_TIMEOUT:-480} SEEDS=${SEEDS:-0,1,2} \
  bash "$(dirname "$0")/gpu_eval.sh" "$OUT" solid > "$OUT/gpu_eval.out" 2>&1 || {
  cat "$OUT/gpu_eval.out"; exit 1; }
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
from nfsd_gs.eval.report import steps_curve, steps_curve_table
out = Path(sys.argv[1])
results = out / "results.json"
if not results.is_file():
    sys.exit("no results.json: the evaluation wrote nothing (see eval.log)")
rows, fewest = steps_curve(json.loads(results.read_text())["summary"])
(out / "curve.md").write_text("# Steps to quality, bundled prior\n\n"
                              + steps_curve_table(rows, fewest) + "\n")
PY
cat "$OUT/curve.md"
