#!/usr/bin/env bash
# Catalogue throughput on one GPU (issue 12): assets/hour of a shell loop of
# `python -m nfsd_gs.train` (start-up paid every time) against `python -m nfsd_gs.batch`
# at --per-gpu 1, 4, 8, 16, 2 on the bundled prior, the random SD-2.1-base-shaped prior
# (512x512 x 4 views, 300 steps) at --per-gpu 1 and 2, and the judge's verdicts of the
# catalogue against `python -m nfsd_gs.eval` for the same prompts and seed.
# Parts run in the order below under one deadline (BUDGET_S, default 380 s after set-up); a
# part that no longer fits is skipped and says so. Every command's wall time includes its
# start-up (Python, Ray, the workers' prior loads), as a user would see it.
# Usage (on the device): . .whl/gpu-env.sh && scripts/gpu_batch.sh OUT_DIR
# Writes OUT_DIR/results.md, results.json, logs.tgz; prints the table last.
# DRY_RUN=1: the logic on the CPU, each kind of part once, tiny: the shell loop and the
# catalogue on the tiny random prior (2 lines, 2 steps), the evaluation on the bundled
# prior with a small alignment grid, the SD-shaped catalogue on random:tiny-latent.
set -euo pipefail
. "$(dirname "$0")/common.sh"
OUT=${1:?output folder}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d /tmp/gpu_batch.XXXX)
export RAY_USAGE_STATS_ENABLED=0 OMP_NUM_THREADS=1
BUDGET_S=${BUDGET_S:-380}
START=$(date +%s)
# No turntable (no ffmpeg on the device): the same work in every mode.
COMMON=(output.turntable=false ${EXTRA:-})
SD_PRIOR=${SD_PRIOR:-random:sd21-base}
BUNDLED=(); EVAL_ARGS=(); CHECK_GPU=${CHECK_GPU:-1}
if [ "$DRY_RUN" = 1 ]; then
  SD_PRIOR=random:tiny-latent; BUDGET_S=100000  # no Ray probe: the catalogue starts Ray
  COMMON+=(steps=2 camera.batch_size=1 init.num_points=50 output.snapshot_every=100)
  BUNDLED=(--config tiny_test --workers 1)  # no judge: its ground truth takes minutes on a CPU
  EVAL_ARGS=(--align-yaws 8 --align-scales 0.65,1.3,3 --no-warmup)
fi
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }

[ "$DRY_RUN" = 1 ] || python3 - "$CHECK_GPU" <<'PY' > "$WORK/check.log" 2>&1 || { cat "$WORK/check.log"; echo "ray does not work here"; exit 1; }
import sys
import ray, torch
ray.init(address="local", include_dashboard=False, log_to_driver=False)
print("ray", ray.__version__, ray.cluster_resources())
@ray.remote(num_gpus=0.5)
class Probe:
    def device(self):
        return torch.cuda.get_device_name(0)
if sys.argv[1] == "1":
    print([ray.get(Probe.remote().device.remote()) for _ in range(2)])
PY
grep -v WARNING "$WORK/check.log" 2>/dev/null || true
python3 -c "from nfsd_gs.eval import all_prompts; print('\n'.join(all_prompts('solid')))" > "$WORK/world.txt"
[ -s "$WORK/world.txt" ] || { echo "no prompts in the world"; exit 1; }

# part NAME NEED_S CMD...: run CMD with a timeout of what is left, if NEED_S still fits
part() {
  local name=$1 need=$2; shift 2
  local budget; budget=$(left)
  if (( budget < need )); then echo "skip $name: ${budget}s left, needs ~${need}s" | tee -a "$WORK/skipped.log"; return; fi
  local t0; t0=$(date +%s.%N)
  tolerate timeout "$budget" "$@" > "$WORK/$name.log" 2>&1
  echo "{\"part\": \"$name\", \"rc\": $rc, \"wall_s\": $(awk "BEGIN {print $(date +%s.%N) - $t0}")}" >> "$WORK/parts.jsonl"
  echo "$name: rc=$rc $(tail -1 "$WORK/$name.log")"
}

loop() {  # the shell loop: one process per prompt
  local prompts=$1 out=$2; shift 2
  while read -r prompt; do
    python -m nfsd_gs.train --no-progress --prompt "$prompt" --output-root "$out" "$@" || return $?
  done < "$prompts"
}
export -f loop  # run by `timeout` through bash -c

LOOP=3; BUNDLED_KN="1:8 4:16 8:24"; SD_KS="1 2"; SD_LINES=2; SD=(steps=300)
# a dry run: one line of the SD-shaped catalogue only if asked (DRY_RUN_SD=1; Ray start-up is
# most of its time)
[ "$DRY_RUN" = 1 ] && { LOOP=1; BUNDLED_KN=1:2; SD_KS=${DRY_RUN_SD:+1}; SD_LINES=1
                        SD=(steps=2 camera.resolution=32); }
head -n "$LOOP" "$WORK/world.txt" > "$WORK/loop3.txt"
part loop_bundled 40 bash -c 'loop "$@"' loop "$WORK/loop3.txt" "$WORK/loop" "${BUNDLED[@]:0:2}" \
  "${COMMON[@]}"
for kn in $BUNDLED_KN; do
  k=${kn%:*}; n=${kn#*:}
  head -n "$n" "$WORK/world.txt" > "$WORK/bundled_$n.txt"
  part "batch_bundled_k$k" 45 python -m nfsd_gs.batch "$WORK/bundled_$n.txt" --per-gpu "$k" --no-progress \
    --output-root "$WORK/bundled_k$k" "${BUNDLED[@]}" "${COMMON[@]}"
done
# the judge: the eval of the catalogue's first 3 prompts (same config and seed 0)
part eval_bundled 45 python -m nfsd_gs.eval --variants nfsd@7.5 --prompts "$(paste -sd, "$WORK/loop3.txt")" \
  --out "$WORK/eval" "${EVAL_ARGS[@]}" "${COMMON[@]}"
if [ "$DRY_RUN" != 1 ]; then
  part batch_bundled_k16 70 python -m nfsd_gs.batch "$WORK/world.txt" --per-gpu 16 --no-progress \
    --output-root "$WORK/bundled_k16" "${COMMON[@]}"
fi
printf 'a DSLR photo of a corgi\na ceramic teapot\n' | head -n "$SD_LINES" > "$WORK/sd.txt"
for k in $SD_KS; do
  part "batch_sd_k$k" 100 python -m nfsd_gs.batch "$WORK/sd.txt" --per-gpu "$k" --no-progress \
    --config nfsd_gs --output-root "$WORK/sd_k$k" "${BUNDLED[@]:2}" prior.model="$SD_PRIOR" \
    "${COMMON[@]}" "${SD[@]}"
done
if [ "$DRY_RUN" != 1 ]; then
  part batch_bundled_k2 45 python -m nfsd_gs.batch "$WORK/bundled_8.txt" --per-gpu 2 --no-progress \
    --output-root "$WORK/bundled_k2" "${COMMON[@]}"
fi

python3 - "$WORK" "$OUT" <<'PY'
import json, sys
from pathlib import Path

work, out = Path(sys.argv[1]), Path(sys.argv[2])
parts = [json.loads(l) for l in (work / "parts.jsonl").read_text().splitlines()] if (work / "parts.jsonl").exists() else []
rows = []
for p in parts:
    name, wall = p["part"], p["wall_s"]
    if name == "loop_bundled":
        made = len(list((work / "loop").glob("*/model.ply")))
        rows.append(dict(mode="shell loop of nfsd_gs.train", prior="bundled", per_gpu=None, assets=made,
                         wall_s=wall, per_hour=3600 * made / wall, rc=p["rc"]))
        continue
    if not name.startswith("batch_"):
        continue
    prior, k = name.split("_")[1], int(name.rsplit("_k", 1)[1])
    manifest = work / f"{prior}_k{k}" / "manifest.jsonl"
    m = [json.loads(l) for l in manifest.read_text().splitlines()] if manifest.exists() else []
    done = [r for r in m if r["status"] == "done"]
    peaks = [r["peak_mem_mib"] for r in done if r.get("peak_mem_mib")]
    secs = [r["seconds"] for r in done if r.get("seconds")]
    rows.append(dict(mode="nfsd_gs.batch", prior=prior, per_gpu=k, assets=len(done), lines=len(m),
                     wall_s=wall, per_hour=3600 * len(done) / wall, rc=p["rc"],
                     mean_asset_s=sum(secs) / len(secs) if secs else None,
                     peak_mem_mib=max(peaks) if peaks else None))
loop = next((r["per_hour"] for r in rows if r["prior"] == "bundled" and r["per_gpu"] is None), None)
judge = []
results = work / "eval" / "results.json"
if results.exists():
    ev = {r["prompt"]: r for r in json.loads(results.read_text())["rows"] if not r.get("error")}
    for k in (1, 2, 4, 8, 16):
        manifest = work / f"bundled_k{k}" / "manifest.jsonl"
        if not manifest.exists():
            continue
        for r in map(json.loads, manifest.read_text().splitlines()):
            if r["prompt"] in ev and r.get("score"):
                judge.append(dict(prompt=r["prompt"], per_gpu=k, batch_shape=r["score"]["shape_acc"],
                                  batch_colour=r["score"]["colour_acc"], eval_shape=ev[r["prompt"]]["ours"]["shape_acc"],
                                  eval_colour=ev[r["prompt"]]["ours"]["colour_acc"]))
lines = ["| mode | prior | per-gpu | assets | wall s (all start-up) | assets/hour | x shell loop | mean s/asset (in worker) | peak MiB per process | rc |",
         "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
f = lambda v, s: "-" if v is None else format(v, s)
for r in rows:
    ratio = r["per_hour"] / loop if loop and r["prior"] == "bundled" else None
    lines.append(f"| {r['mode']} | {r['prior']} | {f(r['per_gpu'], 'd')} | {r['assets']} | {r['wall_s']:.1f} | "
                 f"{r['per_hour']:.0f} | {f(ratio, '.2f')} | {f(r.get('mean_asset_s'), '.1f')} | "
                 f"{f(r.get('peak_mem_mib'), '.0f')} | {r['rc']} |")
if judge:
    lines += ["", "| prompt | per-gpu | batch shape | eval shape | batch colour | eval colour |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {j['prompt']} | {j['per_gpu']} | {j['batch_shape']:.3f} | {j['eval_shape']:.3f} | "
              f"{j['batch_colour']:.3f} | {j['eval_colour']:.3f} |" for j in judge]
skipped = work / "skipped.log"
if skipped.exists():
    lines += [""] + skipped.read_text().splitlines()
(out / "results.md").write_text("\n".join(lines) + "\n")
(out / "results.json").write_text(json.dumps({"rows": rows, "judge": judge}, indent=1))
PY
tar czf "$OUT/logs.tgz" -C "$WORK" --exclude='*.pt' --exclude='*.ply' --exclude='*.png' .
device_info
cat "$OUT/results.md"
rm -rf "$WORK"
