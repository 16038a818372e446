#!/usr/bin/env bash
# Run on a machine WITH the package index, before tools/device_check.sh goes to a GPU
# machine without one: puts into .device-wheels/ (ignored by git) the wheels the check
# needs on top of the GPU machine's own torch, torchvision, triton and numpy: mmengine,
# mmcv-lite, mmpretrain, open_clip, webdataset, pytest, timm (for --official) and their
# dependencies, at the versions of requirements/lock.txt, for the GPU machine's Python.
#
#   tools/gather_device_wheels.sh [PYTHON_VERSION]   e.g. 3.12 (default: this python3's)
#   RILS_MM_DEVICE_WHEELS  folder (default: .device-wheels at the repository root)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${RILS_MM_DEVICE_WHEELS:-$ROOT/.device-wheels}"
PYVER="${1:-$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')}"
PY="${PYTHON:-python3}"
say() { printf '[gather] %s\n' "$*"; }
mkdir -p "$OUT"
"$PY" -m uv --version >/dev/null 2>&1 || "$PY" -m pip install -q uv==0.13.9
LIST="$OUT/requirements.txt"
# Everything but what the GPU machine brings (torch, its CUDA libraries, triton, numpy,
# and what torch / torchvision themselves depend on).
printf 'pytest>=8\npytest-timeout>=2.3\ntimm\n' >"$OUT/extra.in"
"$PY" -m uv pip compile -q --python-version "$PYVER" -c "$ROOT/requirements/lock.txt" \
    "$ROOT/requirements/runtime.txt" "$ROOT/requirements/mmcv_lite.txt" "$OUT/extra.in" |
    grep -E '^[A-Za-z0-9]' |
    grep -v -i -E '^(torch|torchvision|triton|numpy|nvidia-|cuda-)' |
    grep -v -i -E '^(sympy|mpmath|networkx|jinja2|markupsafe|filelock|fsspec|typing-extensions|setuptools|pillow)==' \
        >"$LIST"
say "$(wc -l <"$LIST") packages for Python $PYVER -> $OUT"
TAG="${PYVER/./}"
while read -r req; do
    # a binary wheel for the GPU machine's Python, else a wheel built here (pure Python)
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
        --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
        --platform any -d "$OUT" "$req" 2>/dev/null ||
        "$PY" -m pip wheel -q --no-deps -w "$OUT" "$req" ||
        { say "could not get $req"; exit 1; }
done <"$LIST"
say "done: $(ls "$OUT"/*.whl | wc -l) wheels (cp$TAG); carry $OUT with the repository"
