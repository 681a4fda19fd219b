#!/usr/bin/env bash
# Issue 18's comparison on one GPU: NFSD@7.5, SDS@7.5, SDS@100, NFSD without its negative
# term, on Gaussians, and NFSD@7.5 on the NeRF backend; every prompt of SPLIT's evaluation
# set x seeds, scored with the judge and against the aligned ground truth.
#
# Usage (on the device, after `. .whl/gpu-env.sh`):
#   scripts/gpu_eval.sh OUT_DIR [SPLIT]          SPLIT: solid (default), two-tone, all
# Knobs (environment): PROMPTS_LIMIT (default 4: the first N of the split's set; empty for
# all), SEEDS (default 0,1,2), STEPS (default: the config's), EVAL_TIMEOUT (seconds, 450),
# DEVICE (default cuda; cpu to try the script with tiny settings).
#
# The evaluation folder, outputs/gpu_eval/SPLIT in the work tree, survives between calls
# on a warm machine: calling again (e.g. with a larger PROMPTS_LIMIT) keeps finished runs
# and trains only the missing ones. Runs go prompt by prompt, so a stop at the timeout
# leaves every variant of the finished (prompt, seed) pairs.
# Writes OUT_DIR/results.json, results.md, eval.log and strips.tgz; prints the summary last.
set -u
OUT=${1:?output folder}
SPLIT=${2:-solid}
LIMIT=${PROMPTS_LIMIT-4}
SEEDS=${SEEDS:-0,1,2}
EVAL=outputs/gpu_eval/$SPLIT
mkdir -p "$OUT" "$EVAL"
ARGS=(--comparison --split "$SPLIT" --seeds "$SEEDS" --out "$EVAL" --device "${DEVICE:-cuda}")
[ -n "$LIMIT" ] && ARGS+=(--limit "$LIMIT")
[ -n "${STEPS:-}" ] && ARGS+=(--steps "$STEPS")
echo "== python -m nfsd_gs.eval ${ARGS[*]}"
# SIGINT first: the evaluation stops after writing what it finished (status 'interrupted').
timeout -s INT -k 30 "${EVAL_TIMEOUT:-450}" python -m nfsd_gs.eval "${ARGS[@]}" \
  > "$OUT/eval.log" 2>&1
echo "eval rc=$? (130: stopped at the timeout; call again to continue)"
cp "$EVAL/results.json" "$EVAL/results.md" "$OUT/" 2>/dev/null || echo "no results written"
[ -d "$EVAL/strips" ] && tar czf "$OUT/strips.tgz" -C "$EVAL" strips
grep -E "error|Traceback" "$OUT/eval.log" | tail -5
sed -n '/^## Per variant/,/^## Per run/p' "$OUT/results.md" 2>/dev/null | grep '^|'
