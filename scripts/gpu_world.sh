#!/usr/bin/env bash
# The bundled world's weights on one GPU (issue 18): train the judge (clean renders of both
# splits) beside the diffusion prior (both splits, time-boxed), then check the prior at
# CFG 7.5 and 3 on both splits with the new judge. Leaves in OUT_DIR (4 files, each < 16 MiB):
#   prior_unet.tar       the U-Net (fp16 safetensors + config)       -> nfsd_gs/assets/priors/shapes/
#   world_rest.tar.gz    text encoder, tokenizer, scheduler, prior_info.json, loss.csv, judge/
#   checks.tar.gz        check JSONs, sample grids and every log
#   summary.md           the table printed last
# Install them with: scripts/install_world_assets.sh OUT_DIR
# Usage (on the device, from the repository root):
#   . .whl/gpu-env.sh && bash scripts/gpu_world.sh OUT_DIR
# PRIOR_MINUTES (default 6.0) is the prior's whole budget (pool rendering, training, saving).
# PRIOR_DIR (default: a temporary folder) is where the prior and its train_state.pt go: an
# ignored folder of the checkout (e.g. .work/prior1) outlives the call on a machine that is
# still warm, so the next call can continue it with PRIOR_ARGS="--resume .work/prior1 ...".
# SKIP_JUDGE=1 keeps the shipped judge (no judge training); PROBE=1 first times the prior's
# training step at batch 256/512/1024 (scripts/prior_throughput.py); CHECK_PER_PROMPT sets
# the check's samples per prompt (default 4: 192 solid, 768 two-tone images; the check is
# scripts/gpu_prior_check.sh, with the DDIM-GLIDE sampler); PRIOR_FALLBACK_ARGS: if
# the prior's training fails (say --compile), it runs again with these for the time left.
# A CPU dry run of the logic (tiny sizes; one check, CFG 7.5 on the solid split, one image
# per prompt): DRY_RUN=1 bash scripts/gpu_world.sh /tmp/world_dry, which is
#   DEVICE=cpu PRIOR_ARGS="--steps 2 --batch-size 2 --pool-size 4" \
#   JUDGE_ARGS="--train-images 32 --test-images 16 --epochs 1" CHECK_ARGS="--steps 1" \
#   CHECK_PER_PROMPT=1 CHECK_CFGS=7.5 CHECK_SPLITS=solid bash scripts/gpu_world.sh /tmp/world_dry
set -euo pipefail
. "$(dirname "$0")/common.sh"
if [ "$DRY_RUN" = 1 ]; then
  DEVICE=cpu PRIOR_ARGS="--steps 2 --batch-size 2 --pool-size 4"
  JUDGE_ARGS="--train-images 32 --test-images 16 --epochs 1" CHECK_ARGS="--steps 1"
  CHECK_PER_PROMPT=1 CHECK_CFGS=7.5 CHECK_SPLITS=solid
fi
OUT=${1:?output folder}
PRIOR_MINUTES=${PRIOR_MINUTES:-6.0}
DEVICE=${DEVICE:-cuda}
PRIOR_ARGS=${PRIOR_ARGS:-}
JUDGE_ARGS=${JUDGE_ARGS:---train-images 40000 --test-images 4000 --epochs 8 --width 24}
CHECK_ARGS=${CHECK_ARGS:-}
CHECK_CFGS=${CHECK_CFGS:-7.5 3}
CHECK_SPLITS=${CHECK_SPLITS:-solid two-tone}
# Checks are skipped past this many seconds after the script's start (the device's
# 600 s per call also covers setting up the environment); the weights are packed first.
DEADLINE_S=${DEADLINE_S:-530}
WORK=$(mktemp -d /tmp/gpu_world.XXXX)
PRIOR_DIR=${PRIOR_DIR:-$WORK/prior}
SKIP_JUDGE=${SKIP_JUDGE:-0}
PROBE=${PROBE:-0}
CHECK_PER_PROMPT=${CHECK_PER_PROMPT:-}
mkdir -p "$OUT" "$PRIOR_DIR" "$WORK/judge" "$WORK/checks"
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }

device_info > "$WORK/checks/gpu.txt"
git rev-parse HEAD >> "$WORK/checks/gpu.txt" 2>/dev/null || true

# summary.md and checks.tar.gz, rewritten after every part (a run cut short keeps them)
summarize() {
  python - "$WORK" "$PRIOR_DIR" > "$OUT/summary.md" <<'EOF'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
table = work / "checks" / "prior_checks.md"
print(table.read_text() if table.is_file() else "(no check yet)")
info = Path(sys.argv[2]) / "prior_info.json"
if info.is_file():
    i = json.loads(info.read_text())
    print(f"\nprior: {i['steps']} steps, final loss {i['final_loss']}, {i['images_per_s']} images/s, "
          f"{i['pool_views']} pool views, {i['wall_s']} s on {i['device']}")
judge = work / "judge" / "judge.json"
if judge.is_file():
    j = json.loads(judge.read_text())
    print(f"judge held-out (clean renders): {json.dumps(j['held_out'])}, {j['wall_s']} s")
EOF
  cp "$OUT/summary.md" "$WORK/checks/"
  tar -czf "$OUT/checks.tar.gz" -C "$WORK" checks
}

if [ "$PROBE" = 1 ]; then
  stamp "training-step throughput"
  tolerate timeout 90 python scripts/prior_throughput.py --device "$DEVICE" 2>&1 | tee "$WORK/checks/throughput.md"
fi
judge_pid=""
if [ "$SKIP_JUDGE" != 1 ]; then
  stamp "judge (background)"
  timeout 300 python -m nfsd_gs.shapeworld train-judge --out "$WORK/judge" --device "$DEVICE" \
    $JUDGE_ARGS > "$WORK/checks/judge.log" 2>&1 &
  judge_pid=$!
fi
stamp "prior ($PRIOR_MINUTES min) into $PRIOR_DIR"
tolerate timeout 540 python -m nfsd_gs.shapeworld train-prior --out "$PRIOR_DIR" --device "$DEVICE" \
  --minutes "$PRIOR_MINUTES" --log-every 100 $PRIOR_ARGS > "$WORK/checks/prior.log" 2>&1
prior_rc=$rc
if [ "$prior_rc" != 0 ] && [ -n "${PRIOR_FALLBACK_ARGS:-}" ]; then  # e.g. --compile failed
  tail -5 "$WORK/checks/prior.log"
  left_min=$(python -c "print(round($PRIOR_MINUTES - ($(date +%s) - $start) / 60, 2))")
  stamp "prior failed (rc=$prior_rc): again with PRIOR_FALLBACK_ARGS for $left_min min"
  mv "$WORK/checks/prior.log" "$WORK/checks/prior_failed.log"
  tolerate timeout 540 python -m nfsd_gs.shapeworld train-prior --out "$PRIOR_DIR" \
    --device "$DEVICE" --minutes "$left_min" --log-every 100 $PRIOR_FALLBACK_ARGS \
    > "$WORK/checks/prior.log" 2>&1
  prior_rc=$rc
fi
judge_rc=skipped
if [ -n "$judge_pid" ]; then tolerate wait $judge_pid; judge_rc=$rc; fi
stamp "prior rc=$prior_rc, judge rc=$judge_rc"
tail -2 "$WORK/checks/prior.log"; tail -1 "$WORK/checks/judge.log" 2>/dev/null || true

stamp "packing the weights"
[ -d "$PRIOR_DIR/unet" ] && tar -cf "$OUT/prior_unet.tar" -C "$PRIOR_DIR" unet
mkdir -p "$WORK/pack/prior"
for item in text_encoder tokenizer scheduler prior_info.json loss.csv; do
  [ -e "$PRIOR_DIR/$item" ] && cp -r "$PRIOR_DIR/$item" "$WORK/pack/prior/"
done
[ -f "$WORK/judge/judge.json" ] && cp -r "$WORK/judge" "$WORK/pack/"
[ -n "$(ls "$WORK/pack/prior")" ] && tar -czf "$OUT/world_rest.tar.gz" -C "$WORK/pack" .
summarize
JUDGE="$WORK/judge"
[ -f "$JUDGE/judge.json" ] || JUDGE=nfsd_gs/assets/judge  # fall back to the shipped one
if [ -d "$PRIOR_DIR/unet" ]; then  # the check (scripts/gpu_prior_check.sh), within the deadline
  stamp "checks"
  PRIORS="new=$PRIOR_DIR" JUDGE="$JUDGE" SPLITS="$CHECK_SPLITS" CFGS="$CHECK_CFGS" \
    PER_PROMPT="${CHECK_PER_PROMPT:-4}" CHECK_ARGS="$CHECK_ARGS" DEVICE="$DEVICE" \
    DEADLINE_S=$(( DEADLINE_S - ($(date +%s) - start) - 60 )) \
    tolerate bash "$(dirname "$0")/gpu_prior_check.sh" "$WORK/checks"
fi

summarize
ls -l "$OUT"
stamp "done"
cat "$OUT/summary.md"
