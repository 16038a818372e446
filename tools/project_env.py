"""Run the tools under the project's Python environment.

``bash tools/quickstart.sh`` (or ``tools/setup_env.sh``) installs the stack into
``.venv/`` at the repository root. A later ``python tools/train.py ...`` typed on
the same machine runs whatever ``python`` is on the PATH; when that interpreter
lacks the stack and ``.venv/`` exists, :func:`ensure_project_python` re-executes the
tool under ``.venv/bin/python`` (with a one-line note), so the README's commands
work without activating anything. An interpreter that has the stack (an activated
venv, a conda env, a cluster module) is always used as it is.
"""
import importlib.util
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: set in the re-executed process, so that a broken .venv cannot loop
_GUARD = 'RILS_MM_REEXEC'


def project_python(root: str = ROOT) -> str:
    """The interpreter of the project's own environment, ``ROOT/.venv/bin/python``."""
    return osp.join(root, '.venv', 'bin', 'python')


def ensure_project_python(required=('torch', 'mmengine', 'mmpretrain'), root: str = ROOT):
    """Re-execute this script under ``.venv/bin/python`` if the running
    interpreter cannot import ``required`` and the project's venv exists.

    Returns normally when the current interpreter has the stack; exits with a
    message saying what to run when neither it nor a ``.venv`` does.
    """
    missing = [m for m in required if importlib.util.find_spec(m) is None]
    if not missing:
        return
    venv_python = project_python(root)
    if not os.access(venv_python, os.X_OK) or os.environ.get(_GUARD) == '1':
        sys.exit(f'[rils-mm] {sys.executable or "this Python"} cannot import '
                 f'{", ".join(missing)}. Run `bash tools/quickstart.sh` (or '
                 '`bash tools/setup_env.sh`) once to create .venv/, or activate an '
                 'environment that has the stack (README, Installation).')
    print(f'[rils-mm] {sys.executable} lacks {", ".join(missing)}: re-running under '
          f'{osp.relpath(venv_python)} (`source .venv/bin/activate` makes this the '
          'default)', file=sys.stderr, flush=True)
    env = dict(os.environ, **{_GUARD: '1'})
    os.execve(venv_python, [venv_python] + sys.argv, env)


def setup_tool(name: str, required=('torch', 'mmengine', 'mmpretrain'),
               root: str = ROOT) -> str:
    """The start-up of every tool in ``tools/``; call it before importing the stack.

    Puts the repository root first on ``sys.path`` (so that ``import rils_mm`` is this
    checkout) and, when the tool runs as a script (``name == '__main__'``), makes sure the
    interpreter has ``required`` (:func:`ensure_project_python`). Imported as a module
    (tests), nothing is re-executed. Returns the repository root.
    """
    if sys.path[:1] != [root]:
        sys.path.insert(0, root)
    if name == '__main__':
        ensure_project_python(required, root)
    return root
