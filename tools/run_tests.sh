#!/usr/bin/env bash
# Quick start, command 2: set up the environment if needed, lint, build the manual with
# warnings as errors, then run the whole test suite (slow end-to-end tests included; pass
# `-m "not slow"` for the fast ones only).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh" --full  # mmcv with ops (built once, cached), mmdet, mmseg
PY="${VIRTUAL_ENV:-$ROOT/.venv}/bin/python"
cd "$ROOT"
echo "[tests] ruff check (lint + import order, configured in pyproject.toml)"
"$PY" -m ruff check .
if "$PY" -c 'import sphinx, myst_parser' 2>/dev/null; then
    echo "[tests] docs: sphinx-build -W (warnings are errors; nothing is fetched)"
    DOCS_OUT="$(mktemp -d)"
    "$PY" -m sphinx -W --keep-going -q -b html -d "$DOCS_OUT/doctrees" docs/en "$DOCS_OUT/html"
    rm -rf "$DOCS_OUT"
else
    echo "[tests] docs: not built: sphinx needs Python >= 3.11 (requirements/docs.txt)"
fi
# Many tests start Python processes (torchrun, tools/*.py); with PYTHONDONTWRITEBYTECODE set
# each of them would compile mmpretrain, mmdet, transformers, ... from source again (about
# 10 s a process on 2 cores). Let the first one cache the bytecode (in the environment and
# in gitignored __pycache__ folders).
unset PYTHONDONTWRITEBYTECODE
exec "$PY" -m pytest "$@"
