# Sourced by the shell tools (dist_train.sh, slurm_train.sh): sets PYTHON to the
# interpreter to run, like tools/project_env.py does for the Python tools:
#   $PYTHON if set; else `python` when it can import the stack; else the project's
#   .venv/bin/python (made by tools/quickstart.sh or tools/setup_env.sh).
_rils_mm_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if command -v python >/dev/null 2>&1 &&
        python -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ("torch", "mmengine", "mmpretrain")))' 2>/dev/null; then
        PYTHON=python
    elif [ -x "$_rils_mm_root/.venv/bin/python" ]; then
        PYTHON="$_rils_mm_root/.venv/bin/python"
        echo "[rils-mm] using $PYTHON (\`source .venv/bin/activate\` makes it the default)" >&2
    else
        echo "[rils-mm] no Python with the stack: run \`bash tools/quickstart.sh\` (or \`bash tools/setup_env.sh\`) once, or activate your environment" >&2
        exit 1
    fi
fi
unset _rils_mm_root
