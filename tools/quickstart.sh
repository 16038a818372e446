#!/usr/bin/env bash
# Quick start, command 1: set up the lite environment if needed (no C++ build: mmcv-lite),
# then train a tiny RILS on the toy image-text corpus (CPU, a few minutes) and print its
# zero-shot accuracy. `bash tools/run_tests.sh` later upgrades the same environment to the
# full stack (mmcv with ops, mmdet, mmseg).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh" --lite
PY="${VIRTUAL_ENV:-$ROOT/.venv}/bin/python"
cd "$ROOT"
exec "$PY" tools/quickstart.py "$@"
