#!/usr/bin/env bash
# Install the weights written by scripts/gpu_world.sh into nfsd_gs/assets/ (run from the
# repository root): the prior into assets/priors/shapes/, the judge into assets/judge/.
# Usage: scripts/install_world_assets.sh FILES_DIR   (the folder holding prior_unet.tar etc.)
# ASSETS=DIR installs into DIR instead of nfsd_gs/assets; DRY_RUN=1 into a new temporary
# folder (the repository's weights stay as they are).
set -euo pipefail
. "$(dirname "$0")/common.sh"
FILES=${1:?folder with prior_unet.tar and world_rest.tar.gz}
ASSETS=${ASSETS:-nfsd_gs/assets}
if [ "$DRY_RUN" = 1 ]; then ASSETS=$(mktemp -d /tmp/world_assets.XXXX); fi
for f in prior_unet.tar world_rest.tar.gz; do
  [ -f "$FILES/$f" ] || { echo "error: $FILES/$f is missing" >&2; exit 2; }
done
STAGE=$(mktemp -d)
tar -xf "$FILES/prior_unet.tar" -C "$STAGE"
tar -xzf "$FILES/world_rest.tar.gz" -C "$STAGE"
[ -f "$STAGE/prior/prior_info.json" ] || { echo "error: no prior_info.json in the archive" >&2; exit 2; }
PRIOR=$ASSETS/priors/shapes
rm -rf "$PRIOR"
mkdir -p "$PRIOR"
mv "$STAGE/unet" "$PRIOR/unet"
mv "$STAGE/prior/"* "$PRIOR/"
if [ -f "$STAGE/judge/judge.json" ]; then
  rm -rf "$ASSETS/judge"
  mv "$STAGE/judge" "$ASSETS/judge"
else
  echo "note: no judge in the archive; $ASSETS/judge left as it was" >&2
fi
rm -rf "$STAGE"
du -sh "$PRIOR" "$ASSETS/judge"
python - "$ASSETS" <<'PY'
import json, sys
from pathlib import Path
assets = Path(sys.argv[1])
info = json.loads((assets / "priors/shapes/prior_info.json").read_text())
judge = json.loads((assets / "judge/judge.json").read_text())
print(f"prior: {info['steps']} steps, loss {info['final_loss']}, splits {info.get('splits')}")
print(f"judge held-out: {judge['held_out']}")
PY
if [ "$DRY_RUN" = 1 ]; then
  echo "installed into $ASSETS (dry run)"
  rm -rf "$ASSETS"
fi
