#!/usr/bin/env bash
# Quick start, command 2: set up the environment if needed, lint, then run the whole test
# suite (slow end-to-end tests included; pass `-m "not slow"` for the fast ones only).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh" --full  # mmcv with ops (built once, cached), mmdet, mmseg
PY="${VIRTUAL_ENV:-$ROOT/.venv}/bin/python"
cd "$ROOT"
echo "[tests] ruff check (lint + import order, configured in pyproject.toml)"
"$PY" -m ruff check .
exec "$PY" -m pytest "$@"
