#!/usr/bin/env bash
# The wheels a GPU call carries (the device machines have no network), for the project's own
# dependencies the machine lacks: the device tool's fetch-wheels (gsplat, diffusers, plyfile,
# omegaconf, trimesh, PyMCubes, gsply, fast-simplification, a repacked Ray) plus xatlas (the
# textured mesh's atlas: tests/test_mesh.py's gpu test and scripts/gpu_mesh.sh need it) into
# .whl/, then .whl_noray/: the same without Ray and its schema packages (16 MiB instead of 40,
# for every call that runs no catalogue: the checkout and .whl/ together are near the 64 MiB a
# call may carry). Both folders are git-ignored (.git/info/exclude).
#
# Usage (on this machine, from the checkout): scripts/fetch_device_wheels.sh
# Then carry [".whl"] or [".whl_noray"] and begin the command with `. .whl/gpu-env.sh || exit;`
# (or `. .whl_noray/gpu-env.sh || exit;`).
# DRY_RUN=1 scripts/fetch_device_wheels.sh OUT_DIR: no network; empty stand-ins for the
# wheels in OUT_DIR/.whl, and the split into OUT_DIR/.whl_noray checked.
set -euo pipefail
. "$(dirname "$0")/common.sh"
root=$(git rev-parse --show-toplevel)
if [ "$DRY_RUN" = 1 ]; then
  root=${1:?output folder}
  mkdir -p "$root/.whl"
  for wheel in gsplat-1.5.3 xatlas-0.0.11 ray-2.60.0 jsonschema-4.26.0 referencing-0.37.0 \
               rpds_py-2026.9.1; do
    : > "$root/.whl/$wheel-py3-none-any.whl"
  done
  printf '%s\n' 'python3 -m pip install --target /tmp/site .whl/*.whl || return 1' \
    > "$root/.whl/gpu-env.sh"
else
  "${FETCH_WHEELS:-$root/../shared/device/fetch-wheels}" xatlas==0.0.11
fi
cd "$root"
rm -rf .whl_noray && mkdir .whl_noray
for wheel in .whl/*.whl; do
  case "$(basename "$wheel")" in
    ray-*|jsonschema*|referencing-*|rpds_py-*) ;;
    *) cp "$wheel" .whl_noray/ ;;
  esac
done
sed 's#\.whl/#.whl_noray/#g' .whl/gpu-env.sh > .whl_noray/gpu-env.sh
if [ "$DRY_RUN" = 1 ]; then
  ls .whl_noray/xatlas-* >/dev/null && ! ls .whl_noray/ray-* 2>/dev/null \
    && grep -q '\.whl_noray/\*\.whl' .whl_noray/gpu-env.sh && echo "dry run: .whl_noray as planned"
  exit
fi
exclude=$(git rev-parse --git-path info/exclude)
grep -qx '/.whl_noray/' "$exclude" || echo '/.whl_noray/' >> "$exclude"
du -sh .whl .whl_noray
