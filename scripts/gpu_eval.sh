#!/usr/bin/env bash
# Issue 18's comparison on one GPU: NFSD@7.5, SDS@7.5, SDS@100, NFSD without its negative
# term, on Gaussians, and NFSD@7.5 on the NeRF backend; every prompt of SPLIT's evaluation
# set x seeds, scored with the judge and against the aligned ground truth.
#
# Usage (on the device, after `. .whl/gpu-env.sh`):
#   scripts/gpu_eval.sh OUT_DIR [SPLIT]          SPLIT: solid (default), two-tone, all
# Knobs (environment): PROMPTS_LIMIT (default 4: the first N of the split's set; empty for
# all), PROMPTS (all: every object of the split, 48 for solid, instead of its evaluation set
# of 12; or a comma list of prompts, every one unless PROMPTS_LIMIT is set), VARIANTS
# (comma list; default the comparison's), ASSETS (runs trained at once in
# each process: --assets-per-process; default the evaluation's), SEEDS (default 0,1,2),
# VARIANT_SPECS (ad-hoc variants, space separated: name=key=value,...), STEPS (default: the
# config's), EVAL_TIMEOUT (seconds, 450),
# PARALLEL (default 1: evaluations sharing the GPU, each on its share of the prompts, merged
# at the end; their train times are then measured under contention), DEVICE (default cuda;
# cpu to try the script with tiny settings), EVAL_DIR (the evaluation folder, default
# outputs/gpu_eval/SPLIT). VARIANT_SPECS alone evaluates only those (scripts/gpu_steps_curve.sh).
# WORST (default 3; 0: none): worst.png and worst.md, each variant's WORST worst runs' strips
# on one sheet, ranked by WORST_BY (all_acc, the default: the judge, then sharpness / GT, then
# IoU; or sharpness, iou, colour_de, speckle: nfsd_gs/eval/worst.py).
#
# The evaluation folder, outputs/gpu_eval/SPLIT in the work tree, survives between calls
# on a warm machine: calling again (e.g. with a larger PROMPTS_LIMIT) keeps finished runs
# and trains only the missing ones. Runs go prompt by prompt, so a stop at the timeout
# leaves every variant of the finished (prompt, seed) pairs.
# Writes OUT_DIR/results.json, results.md, eval.log, strips.tgz, worst.png and worst.md (6 of
# the 8 files a GPU call brings back); prints the summary last.
# DRY_RUN=1: the logic on the CPU: two parallel parts of one prompt each (merged by
# scripts/merge_eval.py), NFSD only, 1 step, a small alignment grid, in OUT_DIR/eval.
set -euo pipefail
. "$(dirname "$0")/common.sh"
OUT=${1:?output folder}
SPLIT=${2:-solid}
PROMPTS=${PROMPTS:-}
case "$PROMPTS" in ""|all) LIMIT=${PROMPTS_LIMIT-4} ;; *) LIMIT=${PROMPTS_LIMIT:-} ;; esac
PARALLEL=${PARALLEL:-1}
EVAL=${EVAL_DIR:-outputs/gpu_eval/$SPLIT}
WORST=${WORST:-3}
WORST_ARGS=(--worst "$WORST" --worst-by "${WORST_BY:-all_acc}")
if [ -n "${VARIANTS:-}" ]; then WHICH=(--variants "$VARIANTS"); else WHICH=(--comparison); fi
[ -n "${VARIANT_SPECS:-}" ] && [ -z "${VARIANTS:-}" ] && WHICH=(--variants none)
ARGS=("${WHICH[@]}" --split "$SPLIT" --seeds "${SEEDS:-0,1,2}" --device "${DEVICE:-cuda}")
if [ "$DRY_RUN" = 1 ]; then
  EVAL=${EVAL_DIR:-$OUT/eval}; LIMIT=2; PARALLEL=2
  if [ -z "${VARIANTS:-}" ] && [ -n "${VARIANT_SPECS:-}" ]; then WHICH=(--variants none)
  else WHICH=(--variants "${VARIANTS:-nfsd@7.5}"); fi
  ARGS=("${WHICH[@]}" --split "$SPLIT" --seeds 0 --device cpu --steps 1
        --no-warmup --align-yaws 8 --align-scales 0.65,1.3,3 camera.batch_size=1
        init.num_points=50)
fi
[ -n "${ASSETS:-}" ] && ARGS+=(--assets-per-process "$ASSETS")
for spec in ${VARIANT_SPECS:-}; do ARGS+=(--variant "$spec"); done
mkdir -p "$OUT" "$EVAL"
rm -f "$EVAL/worst.png" "$EVAL/worst.md"  # an earlier call's, on a warm machine
if [ -n "${STEPS:-}" ]; then ARGS+=(--steps "$STEPS"); fi
# SIGINT first: an evaluation stops after writing what it finished (status 'interrupted').
STOP=(timeout -s INT -k 30 "${EVAL_TIMEOUT:-450}")
share_cores "$PARALLEL"

if [ "$PARALLEL" -le 1 ]; then
  [ -n "$LIMIT" ] && ARGS+=(--limit "$LIMIT")
  [ -n "$PROMPTS" ] && ARGS+=(--prompts "$PROMPTS")
  ARGS+=("${WORST_ARGS[@]}")
  echo "== python -m nfsd_gs.eval ${ARGS[*]} --out $EVAL"
  tolerate "${STOP[@]}" python -m nfsd_gs.eval "${ARGS[@]}" --out "$EVAL" > "$OUT/eval.log" 2>&1
  echo "eval rc=$rc (130: stopped at the timeout; call again to continue)"
else
  # Prompt k goes to part k mod PARALLEL; the parts are merged into $EVAL afterwards.
  mapfile -t PARTS < <(python - "$SPLIT" "$LIMIT" "$PARALLEL" "$PROMPTS" <<'PY'
import sys
from nfsd_gs.errors import NfsdError
from nfsd_gs.eval.__main__ import parse_args, select_prompts
split, limit, parts, which = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
argv = ["--split", split] + (["--prompts", which] if which else []) + (["--limit", limit] if limit else [])
try:
    prompts = select_prompts(parse_args(argv))  # the evaluation's own reading of --prompts
except NfsdError as err:
    sys.exit(f"gpu_eval.sh: {err}")
for k in range(parts):
    print(",".join(prompts[k::parts]))
PY
)
  pids=()
  for k in "${!PARTS[@]}"; do
    [ -z "${PARTS[$k]}" ] && continue
    echo "== part $k: python -m nfsd_gs.eval ${ARGS[*]} --prompts '${PARTS[$k]}' --out $EVAL/part$k"
    "${STOP[@]}" python -m nfsd_gs.eval "${ARGS[@]}" --prompts "${PARTS[$k]}" \
      --out "$EVAL/part$k" > "$EVAL/part$k.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do tolerate wait "$pid"; echo "part rc=$rc"; done
  cat "$EVAL"/part*.log > "$OUT/eval.log"
  tolerate python scripts/merge_eval.py "$EVAL" $(ls -d "$EVAL"/part*/ 2>/dev/null) \
    "${WORST_ARGS[@]}" > /dev/null
  [ "$rc" = 0 ] || echo "merge failed"
fi
cp "$EVAL/results.json" "$EVAL/results.md" "$OUT/" 2>/dev/null || echo "no results written"
if [ "$WORST" != 0 ]; then
  cp "$EVAL/worst.png" "$EVAL/worst.md" "$OUT/" 2>/dev/null || echo "no worst.png written"
fi
STRIPS=$(cd "$EVAL" && find . -type d -name strips -prune)
if [ -n "$STRIPS" ]; then tar czf "$OUT/strips.tgz" -C "$EVAL" $STRIPS; fi
grep -E "error|Traceback" "$OUT/eval.log" | tail -5 || true
sed -n '/^## Per variant/,/^## Per run/p' "$OUT/results.md" 2>/dev/null | grep '^|' || true
