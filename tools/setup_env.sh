#!/usr/bin/env bash
# Set up (or verify) the Python environment rils-mm runs in.  Idempotent: seconds when
# everything is already installed.  Called by tools/quickstart.sh (--lite) and
# tools/run_tests.sh (--full), so users never have to run it by hand.
#
#   tools/setup_env.sh --lite   pretraining and zero-shot evaluation: torch, mmcv-lite (no
#                               C++ ops, nothing compiled), mmengine, mmpretrain, open_clip,
#                               webdataset, scikit-learn, rils-mm.  About 1 minute.
#   tools/setup_env.sh [--full] everything (the default): mmcv 2.1.0 *with ops*, built once
#                               into a wheel cache outside the repository and reused ever
#                               after, replacing mmcv-lite if that is installed; mmdet,
#                               mmseg, clip-benchmark and the test tools on top.
#
#   * uses the active virtual environment ($VIRTUAL_ENV), else creates/uses .venv/ at the
#     repository root;
#   * a full environment satisfies --lite; --lite never downgrades a full one;
#   * requirements/*.txt state the supported ranges (torch 2.4-2.14, ...); the exact
#     versions come from requirements/lock.txt (the tested environment), used as pip
#     constraints.
#
# Environment knobs:
#   RILS_MM_PYTHON   interpreter used to create .venv (default: python3)
#   RILS_MM_CACHE    wheel cache folder (default: ${XDG_CACHE_HOME:-~/.cache}/rils-mm)
#   MMCV_JOBS        parallel compile jobs for the mmcv build (default: nproc)
#   RILS_MM_INSTALLER uv (default; installed from PyPI into the environment) or pip
#   FORCE_CUDA=1     build mmcv's CUDA ops (automatic when torch sees a GPU)
#   RILS_MM_LOCK     constraints file (default: requirements/lock.txt) or 'none': the
#                    ranges alone, keeping e.g. the torch a GPU cluster image brings
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${RILS_MM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rils-mm}"
MMCV_VERSION=2.1.0
SETUPTOOLS_PIN='setuptools==80.9.0'   # >=77 for torch; <81 keeps pkg_resources (mmcv, mmengine)

say() { printf '[setup] %s\n' "$*"; }
die() {
    printf '[setup] ERROR: %s\n' "$1" >&2
    [ -n "${2:-}" ] && printf '[setup] what to do: %s\n' "$2" >&2
    exit 1
}

MODE=full
for arg in "$@"; do
    case "$arg" in
        --lite) MODE=lite ;;
        --full) MODE=full ;;
        -h | --help) sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$arg'" "use --lite or --full (see tools/setup_env.sh --help)" ;;
    esac
done

# ---------------------------------------------------------------- interpreter / venv
if [ -n "${VIRTUAL_ENV:-}" ]; then
    PY="$VIRTUAL_ENV/bin/python"
    say "using the active virtual environment $VIRTUAL_ENV"
else
    PY="$ROOT/.venv/bin/python"
    if [ ! -x "$PY" ]; then
        BASE_PY="${RILS_MM_PYTHON:-python3}"
        command -v "$BASE_PY" >/dev/null ||
            die "no '$BASE_PY' on PATH" "install Python >= 3.9 or set RILS_MM_PYTHON"
        "$BASE_PY" -c 'import sys; assert sys.version_info >= (3, 9)' 2>/dev/null ||
            die "$BASE_PY is older than 3.9" "set RILS_MM_PYTHON to a Python >= 3.9"
        say "creating $ROOT/.venv with $("$BASE_PY" --version 2>&1)"
        "$BASE_PY" -m venv "$ROOT/.venv" ||
            die "python -m venv failed" "install the venv module (Debian: apt-get install python3-venv)"
    fi
fi
export PATH="$(dirname "$PY"):$PATH"
LOCK="${RILS_MM_LOCK:-$ROOT/requirements/lock.txt}"
if [ "$LOCK" = none ]; then
    LOCKED=()
else
    [ -f "$LOCK" ] || die "RILS_MM_LOCK: no file $LOCK" "name a constraints file, or 'none'"
    LOCKED=(-c "$LOCK")
fi
# --no-compile: byte-compiling every installed module (torch alone has thousands) costs
# more than compiling, on first import, the few that are used.
PIP=("$PY" -m pip --disable-pip-version-check)
PIP_INSTALL=("${PIP[@]}" install -q --no-compile)

# ---------------------------------------------------------------- fast path
# The stamp holds "<mode> <fingerprint>"; a full environment also satisfies --lite.
STAMP_DIR="$("$PY" -c 'import sys; print(sys.prefix)')"
STAMP="$STAMP_DIR/.rils-mm-setup"
FINGERPRINT="$( (cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "$ROOT/tools/setup_env.sh"; echo "lock=$LOCK") | sha256sum | cut -c1-16)"
LITE_IMPORTS='import rils_mm, mmcv, mmpretrain.models, open_clip, webdataset, sklearn'
FULL_IMPORTS="$LITE_IMPORTS, mmcv.ops, mmdet.models, mmseg.models, clip_benchmark, pytest"
if [ "$MODE" = lite ]; then CHECK_IMPORTS="$LITE_IMPORTS"; else CHECK_IMPORTS="$FULL_IMPORTS"; fi
STAMP_MODE='' STAMP_FP=''
if [ -f "$STAMP" ]; then read -r STAMP_MODE STAMP_FP <"$STAMP" || true; fi
if [ "$STAMP_FP" = "$FINGERPRINT" ] && { [ "$STAMP_MODE" = full ] || [ "$STAMP_MODE" = "$MODE" ]; } &&
    (cd "$ROOT" && "$PY" -W ignore -c "$CHECK_IMPORTS") >/dev/null 2>&1; then
    say "environment up to date ($STAMP_MODE, $PY)"
    exit 0
fi
say "setting up the $MODE environment in $STAMP_DIR"

# ---------------------------------------------------------------- installer
# uv, a pip-compatible installer from PyPI, downloads and unpacks wheels in parallel: the
# lite install (torch and its CUDA wheels included) took 30 s with uv against 67 s with pip
# on the same 2-core machine, empty caches. pip stays the fallback; RILS_MM_INSTALLER=pip
# forces it. uv does not read pip.conf: an index set there needs UV_INDEX_URL (or
# RILS_MM_INSTALLER=pip); PIP_INDEX_URL / PIP_EXTRA_INDEX_URL are passed on.
UV_PIN='uv==0.13.9'
INSTALL=("${PIP_INSTALL[@]}")
case "${RILS_MM_INSTALLER:-uv}" in
    uv)
        if "$PY" -m uv --version >/dev/null 2>&1 ||
            "${PIP_INSTALL[@]}" "$UV_PIN" >/dev/null 2>&1; then
            [ -n "${PIP_INDEX_URL:-}" ] && export UV_INDEX_URL="${UV_INDEX_URL:-$PIP_INDEX_URL}"
            [ -n "${PIP_EXTRA_INDEX_URL:-}" ] &&
                export UV_EXTRA_INDEX_URL="${UV_EXTRA_INDEX_URL:-$PIP_EXTRA_INDEX_URL}"
            INSTALL=("$PY" -m uv pip install -q --python "$PY")
            say "installing with $("$PY" -m uv --version) (RILS_MM_INSTALLER=pip to use pip)"
        else
            say "could not install $UV_PIN; installing with pip"
        fi ;;
    pip) ;;
    *) die "RILS_MM_INSTALLER='$RILS_MM_INSTALLER'" "use uv (default) or pip" ;;
esac

# ---------------------------------------------------------------- which mmcv is there
# mmcv (with ops) and mmcv-lite both install the `mmcv` package; never both at once.
MMCV_DIST="$("$PY" - <<'EOF' 2>/dev/null || true
from importlib import metadata
for name in ('mmcv', 'mmcv-lite'):
    try:
        print(name, metadata.version(name))
        break
    except metadata.PackageNotFoundError:
        pass
EOF
)"

if [ "$MODE" = lite ]; then
    # ------------------------------------------------------------ lite: one pip call
    EXTRA=()
    case "$MMCV_DIST" in
        "mmcv $MMCV_VERSION" | "mmcv-lite $MMCV_VERSION") ;;  # either serves pretraining
        "mmcv "*) die "mmcv ${MMCV_DIST#mmcv } is installed, rils-mm needs $MMCV_VERSION" \
            "pip uninstall mmcv, then re-run" ;;
        *) EXTRA=(-r "$ROOT/requirements/mmcv_lite.txt") ;;
    esac
    say "installing torch, mmcv-lite and the pretraining stack (one install call, no compiler)"
    "${INSTALL[@]}" "${LOCKED[@]}" "$SETUPTOOLS_PIN" -r "$ROOT/requirements/torch.txt" \
        -r "$ROOT/requirements/runtime.txt" "${EXTRA[@]}" ||
        die "pip could not install the pretraining stack" \
            "see the pip error above; pins live in requirements/*.txt"
else
    # ------------------------------------------------------------ full: build tools + torch
    say "installing build tools ($SETUPTOOLS_PIN, wheel, ninja) and torch/torchvision"
    "${INSTALL[@]}" "${LOCKED[@]}" "$SETUPTOOLS_PIN" wheel ninja -r "$ROOT/requirements/torch.txt" ||
        die "pip could not install the build tools or torch" \
            "the pins in requirements/torch.txt must be available from your index"

    # ------------------------------------------------------------ mmcv with ops
    if [ "${MMCV_DIST}" = "mmcv $MMCV_VERSION" ] &&
        "$PY" -W ignore -c "import mmcv.ops" >/dev/null 2>&1; then
        say "mmcv $MMCV_VERSION with ops already installed"
    else
        TORCH_TAG="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
        if [ "${FORCE_CUDA:-0}" = 1 ] || "$PY" -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
            FLAVOUR=cuda
        else
            FLAVOUR=cpu
        fi
        WHEEL_DIR="$CACHE/mmcv-$MMCV_VERSION-torch$TORCH_TAG-$FLAVOUR"
        mkdir -p "$WHEEL_DIR"
        WHEEL="$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
        if [ -z "$WHEEL" ]; then
            say "no cached mmcv wheel in $WHEEL_DIR: building mmcv $MMCV_VERSION with $FLAVOUR ops"
            say "(one time only; about 15-40 min on 2 cores; log: $WHEEL_DIR/build.log)"
            BUILD="$(mktemp -d)"
            "${PIP[@]}" download -q --no-deps --no-binary=:all: "mmcv==$MMCV_VERSION" -d "$BUILD" ||
                die "could not download the mmcv $MMCV_VERSION source" "check that pip reaches PyPI"
            tar -xzf "$BUILD/mmcv-$MMCV_VERSION.tar.gz" -C "$BUILD"
            # mmcv's setup.py forces -std=c++17, but torch >= 2.10 headers need C++20.
            sed -i 's/-std=c++17/-std=c++20/g; s#/std:c++17#/std:c++20#g' "$BUILD/mmcv-$MMCV_VERSION/setup.py"
            "${INSTALL[@]}" "${LOCKED[@]}" addict numpy packaging pyyaml yapf opencv-python
            (cd "$BUILD/mmcv-$MMCV_VERSION" &&
                MMCV_WITH_OPS=1 MAX_JOBS="${MMCV_JOBS:-$(nproc)}" \
                    "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$WHEEL_DIR" . \
                    >"$WHEEL_DIR/build.log" 2>&1) ||
                die "mmcv build failed (last lines of $WHEEL_DIR/build.log below)
$(tail -n 20 "$WHEEL_DIR/build.log")" "install a C++20 compiler (g++ >= 10) and the Python headers, then re-run"
            rm -rf "$BUILD"
            WHEEL="$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl | head -n1)"
        else
            say "reusing cached mmcv wheel $WHEEL"
        fi
        # mmcv-lite owns the same files: remove it first, or uninstalling it later would
        # delete the real mmcv's.
        if [ "${MMCV_DIST%% *}" = mmcv-lite ]; then
            say "replacing mmcv-lite with the mmcv wheel that has ops"
            "${PIP[@]}" uninstall -q -y mmcv-lite || die "pip uninstall mmcv-lite failed" \
                "remove it by hand (pip uninstall mmcv-lite) and re-run"
        fi
        "${PIP_INSTALL[@]}" --force-reinstall --no-deps "$WHEEL" ||
            die "installing $WHEEL failed" "delete $WHEEL_DIR and re-run to rebuild"
    fi

    # ------------------------------------------------------------ the rest of the stack
    say "installing the OpenMMLab stack, open_clip, webdataset, clip-benchmark, test and doc tools"
    "${INSTALL[@]}" "${LOCKED[@]}" -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/optional.txt" \
        -r "$ROOT/requirements/tests.txt" -r "$ROOT/requirements/docs.txt" ||
        die "installing requirements failed" "see the pip error above; pins live in requirements/*.txt"
fi

say "installing rils-mm (editable)"
"${INSTALL[@]}" --no-deps --no-build-isolation -e "$ROOT" ||
    die "pip install -e . failed" "see the pip error above"

say "verifying imports"
(cd "$ROOT" && "$PY" -W ignore -c "$CHECK_IMPORTS") ||
    die "the stack does not import" "see the traceback above; delete .venv to start from scratch"
echo "$MODE $FINGERPRINT" >"$STAMP"
say "environment ready ($MODE, $PY)"
