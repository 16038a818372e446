#!/usr/bin/env bash
# The GPU device check (at most 8 minutes on one H200; downloads nothing): the CUDA tests
# (tests/cuda) and the benchmark of rils_mm.benchmark.device, into one JSON and one log.
#
#   tools/gather_device_wheels.sh 3.12          # first, where the package index is
#   tools/device_check.sh [--official PATH] [--out-dir DIR] [benchmark options]
#   tools/device_check.sh --device cpu --tiny   # dry run on a CPU (seconds to minutes)
#
# Uses the machine's python3 (PYTHON=...) with its own torch, triton and numpy; what else
# is missing is installed from .device-wheels/ (RILS_MM_DEVICE_WHEELS) into a virtual
# environment that sees the system packages. Writes DIR/device_check.json (benchmark
# figures plus the test counts) and DIR/device_check.log (default DIR: work_dirs/device_check).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/work_dirs/device_check"
ARGS=() TINY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out-dir) OUT="$2"; shift 2 ;;
        --tiny) TINY=1; ARGS+=("$1"); shift ;;
        -h | --help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
mkdir -p "$OUT"
LOG="$OUT/device_check.log"
exec > >(tee "$LOG") 2>&1
PY="${PYTHON:-python3}"
NEEDS='import torch, mmengine, mmcv, mmpretrain, open_clip, webdataset, sklearn, pytest'
if ! "$PY" -W ignore -c "$NEEDS" 2>/dev/null; then
    WHEELS="${RILS_MM_DEVICE_WHEELS:-$ROOT/.device-wheels}"
    ls "$WHEELS"/*.whl >/dev/null 2>&1 || {
        echo "[device-check] ERROR: $PY lacks the stack and $WHEELS has no wheels;" \
            "run tools/gather_device_wheels.sh where the package index is" >&2
        exit 1
    }
    VENV="$OUT/venv"
    [ -x "$VENV/bin/python" ] || "$PY" -m venv --system-site-packages "$VENV"
    "$VENV/bin/python" -m pip install -q --no-index --no-deps "$WHEELS"/*.whl
    PY="$VENV/bin/python"
fi
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)
"$PY" -c 'import torch; print("[device-check] torch", torch.__version__, "cuda", torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else "(no GPU)")'
if [ "$TINY" = 1 ]; then MARK='not slow'; else MARK='cuda or not slow'; fi
set +e
"$PY" -m pytest -q -p no:cacheprovider -ra tests/cuda -m "$MARK" --junitxml "$OUT/.tests.xml"
TESTS_RC=$?
set -e
"$PY" -W ignore -m rils_mm.benchmark.device --out-dir "$OUT" "${ARGS[@]}"
"$PY" - "$OUT" "$TESTS_RC" "$START" <<'PYEOF'
import json, os, sys, time, xml.etree.ElementTree as ET
out, rc, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
suite = ET.parse(os.path.join(out, '.tests.xml')).getroot().iter('testsuite').__next__()
counts = {k: int(suite.get(k, 0)) for k in ('tests', 'failures', 'errors', 'skipped')}
path = os.path.join(out, 'device_check.json')
report = json.load(open(path))
report['cuda_tests'] = dict(counts, exit_code=rc)
report['wall_s'] = time.time() - start
json.dump(report, open(path, 'w'), indent=1)
os.remove(os.path.join(out, '.tests.xml'))
print(f'[device-check] tests {counts}, exit {rc}; {report["wall_s"]:.0f} s; wrote {path}')
PYEOF
exit "$TESTS_RC"
