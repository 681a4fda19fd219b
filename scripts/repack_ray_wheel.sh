#!/usr/bin/env bash
# Download the ray wheel for the GPU machine (CPython 3.12, manylinux x86_64, the version
# this checkout uses) and the small wheels it needs there, and repack ray without what
# nfsd_gs never runs, so that everything carried to the device stays under 64 MiB:
#   ray/jars/ (the Java workers, 31 MiB), ray/dashboard/client/build (the web UI; the
#   catalogue starts Ray with include_dashboard=False), and the libraries on top of Ray
#   core (rllib, tune, train, serve, data, llm, air, workflow).
# Kept: ray core (_raylet.so, gcs_server, raylet), the dashboard and runtime-env agents that
# every node starts, and Ray Client. The result still imports and runs local actors
# with GPUs (scripts/gpu_batch.sh checks it before anything else).
#
# Usage: scripts/repack_ray_wheel.sh [OUT_DIR]   (default: .whl of this checkout)
#        PYVER=3.11 scripts/repack_ray_wheel.sh /tmp/x   (another CPython, e.g. to test here)
#        DRY_RUN=1 scripts/repack_ray_wheel.sh /tmp/x    (no network: a small wheel in ray's
#        layout stands in for the download; checks what the repacked wheel keeps and drops)
set -euo pipefail
. "$(dirname "$0")/common.sh"
root=$(git rev-parse --show-toplevel)
out=${1:-$root/.whl}
pyver=${PYVER:-3.12}
version=$(python3 -c "import ray; print(ray.__version__)" 2>/dev/null || echo 2.60.0)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
download() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$1" "${@:2}" 2>&1 | grep -v '^WARNING' || true
}
if [ "$DRY_RUN" = 1 ]; then
  python3 - "$work/ray-$version-cp312-cp312-manylinux2014_x86_64.whl" "$version" <<'PY'
import sys
import zipfile

path, version = sys.argv[1:]
names = ["ray/__init__.py", "ray/_raylet.so", "ray/core/src/ray/gcs/gcs_server",
         "ray/util/client/__init__.py", "ray/jars/ray_dist.jar",
         "ray/dashboard/client/build/index.html", "ray/dashboard/agent.py",
         "ray/rllib/__init__.py", "ray/tune/__init__.py"]
with zipfile.ZipFile(path, "w") as wheel:
    for name in names:
        wheel.writestr(name, b"x")
    wheel.writestr(f"ray-{version}.dist-info/RECORD",
                   "".join(f"{name},sha256=x,1\n" for name in names))
PY
else
  download "$work" "ray==$version"
  # ray's own requirements that the GPU machine lacks (it has filelock, packaging, pyyaml,
  # requests and attrs through transformers and hypothesis).
  download "$out" "click>=7.0" "msgpack>=1.0.0,<2" "protobuf>=3.20.3" jsonschema \
    jsonschema-specifications referencing rpds-py
fi
wheel=$(ls "$work"/ray-"$version"-*.whl)
python3 - "$wheel" "$out/$(basename "$wheel")" <<'PY'
import sys
import zipfile

DROP = ("ray/jars/", "ray/dashboard/client/build/", "ray/rllib/", "ray/tune/", "ray/train/",
        "ray/serve/", "ray/data/", "ray/llm/", "ray/air/", "ray/workflow/")
source, target = sys.argv[1:]
with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED,
                                                     compresslevel=9) as dst:
    for info in src.infolist():
        name = info.filename
        if name.startswith(DROP):
            continue
        data = src.read(info)
        if name.endswith(".dist-info/RECORD"):  # the dropped files leave the record too
            data = b"".join(line for line in data.splitlines(keepends=True)
                            if not line.decode().startswith(DROP))
        dst.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
PY
if [ "$DRY_RUN" = 1 ]; then  # what the wheel kept and dropped, and its RECORD agrees
  python3 - "$out/$(basename "$wheel")" <<'PY'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
record = next(n for n in names if n.endswith("RECORD"))
listed = [line.split(",")[0] for line in
          zipfile.ZipFile(sys.argv[1]).read(record).decode().splitlines()]
assert "ray/_raylet.so" in names and "ray/dashboard/agent.py" in names, names
assert not any(n.startswith(("ray/jars/", "ray/rllib/", "ray/dashboard/client/build/"))
               for n in names + listed), names
print(f"repacked: {len(names)} files kept")
PY
fi
ls -la "$out"
du -ch "$out"/*.whl | tail -1
