# Sourced by the GPU scripts (scripts/gpu_*.sh), after `set -euo pipefail`:
#   . "$(dirname "$0")/common.sh"
# DRY_RUN=1: the script's logic on the CPU with tiny sizes (a prior of random weights,
# 1-2 steps, one prompt); tests/test_scripts.py runs every script that way, so a renamed
# function or flag fails the suite instead of the next GPU run.
DRY_RUN=${DRY_RUN:-0}
if [ "$DRY_RUN" = 1 ]; then
  export CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi

# The device, one line per GPU (or what a dry run runs on).
device_info() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || echo "cpu (no nvidia-smi; DRY_RUN=$DRY_RUN)"
}

# tolerate CMD...: run CMD and leave its exit status in $rc. On the GPU a part that fails
# or times out is reported by the caller and the script goes on to the next part; in a
# dry run any failure stops the script with that status.
tolerate() {
  rc=0
  "$@" || rc=$?
  if [ "$rc" != 0 ] && [ "$DRY_RUN" = 1 ]; then
    echo "dry run: '$*' failed with status $rc" >&2
    exit "$rc"
  fi
  return 0
}

# share_cores N: each of N processes sharing this machine gets its share of the cores as
# OpenMP/MKL threads (at least 1; an explicit OMP_NUM_THREADS wins). Twelve evaluations at
# torch's default (every core each) left judging crawling on the H200 (2026-12-04).
share_cores() {
  local n=$(( $(nproc) / $1 ))
  [ "$n" -ge 1 ] || n=1
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$n} MKL_NUM_THREADS=${MKL_NUM_THREADS:-$n}
}

# precompile: write the bytecode of nfsd_gs and of the packages on PYTHONPATH (the device
# installs the carried wheels with --no-compile), as `pip install` does at install time.
# A start-up measured after it is an installed user's, not one that compiles diffusers and
# nfsd_gs from source in every process (which is what happens where PYTHONDONTWRITEBYTECODE
# is set, as on this project's CPU machine).
precompile() {
  local dirs=(nfsd_gs) dir extra=()
  IFS=: read -ra extra <<< "${PYTHONPATH:-}"
  for dir in "${extra[@]}"; do
    [ -d "$dir" ] && [ "$(cd "$dir" && pwd)" != "$PWD" ] && dirs+=("$dir")
  done
  python -m compileall -q -j 0 "${dirs[@]}" > /dev/null || echo "compileall: some files did not compile"
  echo "bytecode written: ${dirs[*]} (PYTHONDONTWRITEBYTECODE=${PYTHONDONTWRITEBYTECODE:-unset})"
}
