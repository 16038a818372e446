#!/usr/bin/env bash
# Quick start, command 1: set up the environment if needed, then train a tiny RILS on the
# toy image-text corpus (CPU, a few minutes) and print its zero-shot accuracy.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
PY="${VIRTUAL_ENV:-$ROOT/.venv}/bin/python"
cd "$ROOT"
exec "$PY" tools/quickstart.py "$@"
