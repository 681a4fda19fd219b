#!/usr/bin/env bash
# The bundled world's prior check (issue 22) for one or more priors, samplers, splits and CFG
# scales, each row `python -m nfsd_gs.shapeworld check` scored by the shipped judge.
# Usage (on the device, from the repository root, after `. .whl/gpu-env.sh`):
#   PRIORS="shipped=nfsd_gs/assets/priors/shapes new=.work/prior2" scripts/gpu_prior_check.sh OUT_DIR
# Knobs: PRIORS (name=folder ...), SAMPLERS ("ddim-glide"; also "ddim"), SPLITS ("solid two-tone"),
# CFGS ("7.5 3"), PER_PROMPT (4: 192 solid and 768 two-tone images), JUDGE (the shipped one),
# DEADLINE_S (rows past it are skipped), CHECK_ARGS (passed on), DEVICE (cuda).
# Writes OUT_DIR/prior_checks.md (one table, printed last), OUT_DIR/prior_checks.tgz (every
# row's JSON, per-prompt table, sample grid and log). A split a prior wasn't trained on is
# skipped (its prior_info.json names the splits it knows).
# DRY_RUN=1 without PRIORS: the logic on the CPU (a prior trained 1 step, 1 DDIM step, solid,
# CFG 7.5).
set -euo pipefail
. "$(dirname "$0")/common.sh"
OUT=${1:?output folder}
WORK=$(mktemp -d /tmp/prior_check.XXXX)
mkdir -p "$OUT" "$WORK/rows"
if [ "$DRY_RUN" = 1 ] && [ -z "${PRIORS:-}" ]; then
  python -m nfsd_gs.shapeworld train-prior --out "$WORK/tiny" --device cpu --steps 1 \
    --batch-size 2 --pool-size 2 > "$WORK/tiny.log" 2>&1 || { cat "$WORK/tiny.log"; exit 1; }
  PRIORS="tiny=$WORK/tiny" SPLITS=solid CFGS=7.5 PER_PROMPT=1 CHECK_ARGS="--steps 1" DEVICE=cpu
fi
PRIORS=${PRIORS:-shipped=nfsd_gs/assets/priors/shapes}
SAMPLERS=${SAMPLERS:-ddim-glide}
SPLITS=${SPLITS:-solid two-tone}
CFGS=${CFGS:-7.5 3}
PER_PROMPT=${PER_PROMPT:-4}
JUDGE=${JUDGE:-nfsd_gs/assets/judge}
DEADLINE_S=${DEADLINE_S:-100000}
CHECK_ARGS=${CHECK_ARGS:-}
DEVICE=${DEVICE:-cuda}
start=$(date +%s)
device_info > "$WORK/rows/gpu.txt"

table() {
  python - "$WORK/rows" <<'PY'
import json, sys
from pathlib import Path
print("| prior | sampler | split | CFG | images | shape | colour | accent | all heads |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|")
for path in sorted(Path(sys.argv[1]).glob("*.json")):
    r = json.loads(path.read_text())
    acc = lambda h: f"{r[h + '_accuracy']:.1%}" if h + "_accuracy" in r else "-"
    print(f"| {path.name.split('__')[0]} | {r['sampler']} | {r['split']} | {r['cfg_scale']} | "
          f"{r['images']} | {acc('shape')} | {acc('colour')} | {acc('accent')} | {acc('all')} |")
PY
}

for entry in $PRIORS; do
  name=${entry%%=*}; folder=${entry#*=}
  splits=$(python -c "import json,sys; i=json.load(open(sys.argv[1])); print(' '.join(i.get('splits', {'solid': 0})))" "$folder/prior_info.json")
  for sampler in $SAMPLERS; do for split in $SPLITS; do for cfg in $CFGS; do
    row="${name}__${sampler}_${split}_cfg${cfg}"
    case " $splits " in *" $split "*) ;; *) echo "$row: skipped ($name knows $splits)"; continue;; esac
    if [ $(( $(date +%s) - start )) -gt "$DEADLINE_S" ]; then echo "$row: skipped (deadline)"; continue; fi
    tolerate python -m nfsd_gs.shapeworld check --prior "$folder" --judge "$JUDGE" --split "$split" \
      --cfg "$cfg" --sampler "$sampler" --per-prompt "$PER_PROMPT" --device "$DEVICE" \
      --batch-size 192 $CHECK_ARGS --json "$WORK/rows/$row.json" --grid "$WORK/rows/$row.png" \
      > "$WORK/rows/$row.md" 2> "$WORK/rows/$row.log"
    echo "[$(( $(date +%s) - start )) s] $row: rc=$rc $(grep -o 'images, CFG.*' "$WORK/rows/$row.md" || true)"
  done; done; done
done
table > "$OUT/prior_checks.md"
tar -czf "$OUT/prior_checks.tgz" -C "$WORK" rows
rm -rf "$WORK"
cat "$OUT/prior_checks.md"
