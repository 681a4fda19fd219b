#!/usr/bin/env bash
# Install the weights written by scripts/gpu_world.sh into nfsd_gs/assets/ (run from the
# repository root): the prior into assets/priors/shapes/, the judge into assets/judge/.
# Usage: scripts/install_world_assets.sh FILES_DIR   (the folder holding prior_unet.tar etc.)
set -euo pipefail
FILES=${1:?folder with prior_unet.tar and world_rest.tar.gz}
for f in prior_unet.tar world_rest.tar.gz; do
  [ -f "$FILES/$f" ] || { echo "error: $FILES/$f is missing" >&2; exit 2; }
done
STAGE=$(mktemp -d)
tar -xf "$FILES/prior_unet.tar" -C "$STAGE"
tar -xzf "$FILES/world_rest.tar.gz" -C "$STAGE"
[ -f "$STAGE/prior/prior_info.json" ] || { echo "error: no prior_info.json in the archive" >&2; exit 2; }
PRIOR=nfsd_gs/assets/priors/shapes
rm -rf "$PRIOR"
mkdir -p "$PRIOR"
mv "$STAGE/unet" "$PRIOR/unet"
mv "$STAGE/prior/"* "$PRIOR/"
if [ -f "$STAGE/judge/judge.json" ]; then
  rm -rf nfsd_gs/assets/judge
  mv "$STAGE/judge" nfsd_gs/assets/judge
else
  echo "note: no judge in the archive; nfsd_gs/assets/judge left as it was" >&2
fi
rm -rf "$STAGE"
du -sh "$PRIOR" nfsd_gs/assets/judge
python - <<'PY'
import json
info = json.load(open("nfsd_gs/assets/priors/shapes/prior_info.json"))
judge = json.load(open("nfsd_gs/assets/judge/judge.json"))
print(f"prior: {info['steps']} steps, loss {info['final_loss']}, splits {info.get('splits')}")
print(f"judge held-out: {judge['held_out']}")
PY
