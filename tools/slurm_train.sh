#!/usr/bin/env bash
# Usage: [GPUS=32 GPUS_PER_NODE=8 CPUS_PER_TASK=10 SIGNAL=USR1@120] tools/slurm_train.sh PARTITION JOB CONFIG [WORK_DIR] [train.py args]
#
# Preemption: SLURM sends SIGUSR1 120 s before the time limit (SIGNAL, srun --signal) and
# SIGTERM on preemption; train.py then finishes the iteration, writes a checkpoint and exits
# with 75 ("requeue me", PreemptionHook) after leaving the file WORK_DIR/preempted. Then
#  - inside an sbatch job (sbatch --requeue --signal=USR1@120 ... tools/slurm_train.sh ...):
#    `scontrol requeue $SLURM_JOB_ID`; the requeued job runs this script again and, being a
#    restart (SLURM_RESTART_COUNT > 0), passes --resume;
#  - from a login shell (or salloc): srun starts again with --resume.
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=${4:-work_dirs/$JOB_NAME}
GPUS=${GPUS:-32}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-10}
SIGNAL=${SIGNAL:-USR1@120}
SRUN_ARGS=${SRUN_ARGS:-}
REQUEUE_STATUS=75  # rils_mm.engine.hooks.REQUEUE_EXIT_CODE (EX_TEMPFAIL)
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/tools/project_python.sh"  # $PYTHON: python with the stack, else .venv's
RESUME=()
if [[ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]]; then RESUME=(--resume); fi
while true; do
    rm -f "$WORK_DIR/preempted"
    status=0
    PYTHONPATH="$ROOT:${PYTHONPATH:-}" srun -p "$PARTITION" \
        --job-name="$JOB_NAME" \
        --gres=gpu:"$GPUS_PER_NODE" \
        --ntasks="$GPUS" \
        --ntasks-per-node="$GPUS_PER_NODE" \
        --cpus-per-task="$CPUS_PER_TASK" \
        --kill-on-bad-exit=1 \
        --signal="$SIGNAL" \
        $SRUN_ARGS \
        "$PYTHON" -u "$ROOT/tools/train.py" "$CONFIG" --work-dir="$WORK_DIR" --launcher=slurm \
        "${@:5}" ${RESUME[@]+"${RESUME[@]}"} || status=$?
    # --kill-on-bad-exit may report another status for the ranks stopped last: the
    # marker says the checkpoint was written.
    if [[ $status -ne $REQUEUE_STATUS && ! -f "$WORK_DIR/preempted" ]]; then
        exit "$status"
    fi
    # A batch job is requeued (an salloc allocation cannot be: then srun runs again).
    if [[ -n "${SLURM_JOB_ID:-}" ]] && scontrol requeue "$SLURM_JOB_ID"; then
        echo "Preempted; requeued job $SLURM_JOB_ID (it resumes with --resume)." >&2
        exit 0
    fi
    echo "Preempted; starting again with --resume." >&2
    RESUME=(--resume)
done
