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
# A CPU dry run of the logic (tiny sizes):
#   DEVICE=cpu PRIOR_ARGS="--steps 2 --batch-size 2 --pool-size 4" \
#   JUDGE_ARGS="--train-images 32 --test-images 16 --epochs 1" CHECK_ARGS="--steps 1" \
#   bash scripts/gpu_world.sh /tmp/world_dry
set -u
OUT=${1:?output folder}
PRIOR_MINUTES=${PRIOR_MINUTES:-6.0}
DEVICE=${DEVICE:-cuda}
PRIOR_ARGS=${PRIOR_ARGS:-}
JUDGE_ARGS=${JUDGE_ARGS:---train-images 40000 --test-images 4000 --epochs 8 --width 24}
CHECK_ARGS=${CHECK_ARGS:-}
# Checks are skipped past this many seconds after the script's start (the device's
# 600 s per call also covers setting up the environment); the weights are packed first.
DEADLINE_S=${DEADLINE_S:-530}
WORK=$(mktemp -d /tmp/gpu_world.XXXX)
mkdir -p "$OUT" "$WORK/prior" "$WORK/judge" "$WORK/checks"
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$WORK/checks/gpu.txt" 2>&1
git rev-parse HEAD >> "$WORK/checks/gpu.txt" 2>/dev/null

# summary.md and checks.tar.gz, rewritten after every part (a run cut short keeps them)
summarize() {
  python - "$WORK" > "$OUT/summary.md" <<'EOF'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
print("| split | CFG | images | shape | colour | accent | all heads |")
print("|---|---|---|---|---|---|---|")
for path in sorted((work / "checks").glob("check_*.json")):
    r = json.loads(path.read_text())
    acc = lambda h: f"{r[h + '_accuracy']:.1%}" if h + "_accuracy" in r else "-"
    print(f"| {r['split']} | {r['cfg_scale']} | {r['images']} | {acc('shape')} | {acc('colour')} "
          f"| {acc('accent')} | {acc('all')} |")
info = work / "prior" / "prior_info.json"
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

stamp "judge (background) and prior ($PRIOR_MINUTES min)"
timeout 300 python -m nfsd_gs.shapeworld train-judge --out "$WORK/judge" --device "$DEVICE" \
  $JUDGE_ARGS > "$WORK/checks/judge.log" 2>&1 &
judge_pid=$!
timeout 480 python -m nfsd_gs.shapeworld train-prior --out "$WORK/prior" --device "$DEVICE" \
  --minutes "$PRIOR_MINUTES" --log-every 100 $PRIOR_ARGS > "$WORK/checks/prior.log" 2>&1
prior_rc=$?
wait $judge_pid
judge_rc=$?
stamp "prior rc=$prior_rc, judge rc=$judge_rc"
tail -2 "$WORK/checks/prior.log"; tail -1 "$WORK/checks/judge.log"

stamp "packing the weights"
[ -d "$WORK/prior/unet" ] && tar -cf "$OUT/prior_unet.tar" -C "$WORK/prior" unet
rest=()
for item in text_encoder tokenizer scheduler prior_info.json loss.csv; do
  [ -e "$WORK/prior/$item" ] && rest+=("prior/$item")
done
[ -f "$WORK/judge/judge.json" ] && rest+=("judge")
[ ${#rest[@]} -gt 0 ] && tar -czf "$OUT/world_rest.tar.gz" -C "$WORK" "${rest[@]}"
summarize
JUDGE="$WORK/judge"
[ -f "$JUDGE/judge.json" ] || JUDGE=nfsd_gs/assets/judge  # fall back to the shipped one
if [ -d "$WORK/prior/unet" ]; then
  for cfg in 7.5 3; do
    for split in solid two-tone; do
      name="check_${split}_cfg${cfg}"
      left=$(( DEADLINE_S - ($(date +%s) - start) - 15 ))
      [ "$left" -gt 90 ] && left=90
      if [ "$left" -lt 20 ]; then stamp "$name skipped: the ${DEADLINE_S} s deadline"; continue; fi
      stamp "$name"
      timeout "$left" python -m nfsd_gs.shapeworld check --prior "$WORK/prior" --judge "$JUDGE" \
        --split "$split" --cfg "$cfg" --device "$DEVICE" --batch-size 192 $CHECK_ARGS \
        --json "$WORK/checks/$name.json" --grid "$WORK/checks/$name.png" \
        > "$WORK/checks/$name.md" 2> "$WORK/checks/$name.log"
      grep "images, CFG" "$WORK/checks/$name.md" || tail -2 "$WORK/checks/$name.log"
      summarize
    done
  done
fi

summarize
ls -l "$OUT"
stamp "done"
cat "$OUT/summary.md"
